"""Raw-log readers for CSV (with header), JSON Lines and Parquet, by file glob.

Each reader yields :class:`RawRecord` objects, one per data row, so that a row that cannot
even be decoded (bad JSON, a CSV line with too many fields) is not lost: it comes out with
``error`` set and goes to the dead-letter output like any other invalid row. Files are
opened through Beam's ``FileSystems``, so the same code reads local paths and ``gs://``.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Any, Iterator, Optional

from apache_beam.io.filesystems import FileSystems

FORMATS = ("csv", "jsonl", "parquet")
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
               ".parquet": "parquet", ".pq": "parquet"}


@dataclasses.dataclass(frozen=True)
class RawRecord:
    """One data row of a raw file: ``row`` when decoded, else ``raw`` text and ``error``."""

    source: str  # "path:line" (CSV/JSONL, 1-based, header is line 1) or "path:row" (Parquet)
    row: Optional[dict] = None
    raw: Optional[str] = None
    error: Optional[str] = None


def match_files(pattern: str) -> list[str]:
    """All files matching a glob (local or any Beam filesystem), sorted; error if none."""
    paths = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
    if not paths:
        raise FileNotFoundError(f"--input {pattern!r} matches no file")
    return paths


def detect_format(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise ValueError(f"input format {fmt!r} is not one of {FORMATS}")
        return fmt
    name = path[:-3] if path.endswith(".gz") else path
    ext = os.path.splitext(name)[1].lower()
    if ext not in _EXTENSIONS:
        raise ValueError(
            f"cannot tell the format of {path!r} from its extension {ext!r}; "
            f"set input_format to one of {FORMATS}")
    return _EXTENSIONS[ext]


def read_records(path: str, fmt: str = "auto") -> Iterator[RawRecord]:
    """Yields every data row of one file as a :class:`RawRecord`."""
    fmt = detect_format(path, fmt)
    if fmt == "parquet":
        yield from _read_parquet(path)
        return
    with FileSystems.open(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        yield from (_read_csv if fmt == "csv" else _read_jsonl)(path, text)


def _read_csv(path: str, text) -> Iterator[RawRecord]:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    width = len(header)
    for row in reader:
        source = f"{path}:{reader.line_num}"
        if not row:
            continue
        if len(row) != width:
            yield RawRecord(source, raw=",".join(row),
                            error=f"row has {len(row)} fields but the header has {width}")
            continue
        yield RawRecord(source, row=dict(zip(header, row)))


def _read_jsonl(path: str, text) -> Iterator[RawRecord]:
    for line_num, line in enumerate(text, start=1):
        line = line.strip()
        if not line:
            continue
        source = f"{path}:{line_num}"
        try:
            row: Any = json.loads(line)
        except json.JSONDecodeError as e:
            yield RawRecord(source, raw=line, error=f"invalid JSON: {e.msg} at column {e.colno}")
            continue
        if not isinstance(row, dict):
            yield RawRecord(source, raw=line, error=f"JSON line is not an object: {line[:80]!r}")
            continue
        yield RawRecord(source, row=row)


def _read_parquet(path: str) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    with FileSystems.open(path) as f:
        index = 0
        for batch in pq.ParquetFile(f).iter_batches(batch_size=8192):
            for row in batch.to_pylist():
                yield RawRecord(f"{path}:{index}", row=row)
                index += 1
