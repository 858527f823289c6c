"""Small whole-file writes through Beam's FileSystems (local paths or gs://)."""
from __future__ import annotations

from apache_beam.io.filesystems import FileSystems


def write_text(path: str, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path``, replacing it."""
    with FileSystems.create(path) as f:
        f.write(text.encode())
