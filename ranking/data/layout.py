"""Sample directory layout: which UTC day a sample file holds, from its name.

``ranking-pipeline`` writes ``<output>/samples/part-<day>-<shard>-of-<shards>.tfrecord``: each
file holds the samples of one UTC day of the impression time ``ts`` (``<day>`` is the ISO date,
``<shards>`` the number of files of that day). A reader of a time range then picks files
instead of parsing every record's ``ts``: the files of days inside the range are read whole,
those of days outside are skipped, and only files the range cuts through (or files without a
day in their name, e.g. ``part-00000-of-00001.tfrecord`` of older pipeline versions) need the
per-record time filter (:mod:`ranking.data.input`).
"""
from __future__ import annotations

import datetime
import os
import re
from typing import Optional

__all__ = ["DAY_SECONDS", "day_of", "day_label", "sample_file_name", "file_day"]

DAY_SECONDS = 86_400
_EPOCH = datetime.date(1970, 1, 1)
_DAY_FILE = re.compile(r"^part-(\d{4}-\d{2}-\d{2})-\d+-of-\d+\.")


def day_of(ts: int) -> int:
    """UTC day index (days since 1970-01-01) of an epoch-seconds time."""
    return ts // DAY_SECONDS


def day_label(day: int) -> str:
    """``day`` (days since 1970-01-01) -> its ISO date, e.g. ``2026-11-01``."""
    return (_EPOCH + datetime.timedelta(days=int(day))).isoformat()


def sample_file_name(day: int, shard: int, shards: int, suffix: str = ".tfrecord") -> str:
    """File name of shard ``shard`` (0-based) of ``shards`` holding day ``day``'s samples."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, {shards}), got {shard!r}")
    return f"part-{day_label(day)}-{shard:05d}-of-{shards:05d}{suffix}"


def file_day(path: str | os.PathLike) -> Optional[int]:
    """The UTC day a sample file holds, from its name; None when the name carries no day."""
    match = _DAY_FILE.match(os.path.basename(os.fspath(path)))
    if match is None:
        return None
    return (datetime.date.fromisoformat(match.group(1)) - _EPOCH).days
