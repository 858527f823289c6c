"""Criteo conversion logs (Chapelle, "Modeling delayed feedback in display advertising",
KDD 2014) -> raw impression logs that ``ranking-pipeline`` reads.

Input: tab-separated text, no header, one clicked ad per line::

    click_ts <TAB> conversion_ts or empty <TAB> 8 integer features <TAB> 9 categorical features

Timestamps are seconds from the start of the log (the public file starts near 0), so
``--time-offset`` (default 2014-01-01 UTC; 0 for absolute timestamps) turns them into epoch
seconds. Integer features may be empty; categorical features are hashed strings.

Output: CSV files with a header, the raw schema (:mod:`pipelines.schema.raw_log`) plus the
features as extra columns ``int_0..int_7`` (numeric) and ``cat_0..cat_8`` (categorical), and
``pipeline.yaml`` declaring those extra columns for ``ranking-pipeline --config``. Each line
becomes one impression that was clicked: ``ts = click_ts``, ``pay_ts`` = the conversion.
The public log has no user, item or country: ``user_id`` is the row id (no click sequence
crosses rows), ``item_id`` and ``category_id`` are the constant ``"criteo"``, the domain is
the default one; the information is in the extra columns.

Synthetic refunds (seed 004: "Criteo conversion logs with synthetic refund timestamps";
refunds are 14% of conversions there): with ``--refund-rate R`` each conversion is refunded
with probability R after an exponential delay of mean ``--refund-delay-days`` (the seed gives
no delay distribution: an assumption, stated in pipeline.yaml's comment), drawn from a
generator seeded by ``(--seed, line number)`` so the output does not depend on file order or
chunking.

A bad line (wrong field count, a non-integer timestamp or integer feature, a conversion before
its click) goes to ``dead_letter.jsonl`` with its source, the field and the value; ``--strict``
raises on it instead.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import random
import sys
from typing import Iterator, Optional

from apache_beam.io.filesystems import FileSystems

from pipelines.io.files import write_text
from pipelines.schema.raw_log import COLUMNS, InvalidRow, parse_row

N_INT, N_CAT = 8, 9
INT_COLUMNS = tuple(f"int_{i}" for i in range(N_INT))
CAT_COLUMNS = tuple(f"cat_{i}" for i in range(N_CAT))
OUTPUT_COLUMNS = COLUMNS + INT_COLUMNS + CAT_COLUMNS
EXTRA_PAIRS = tuple((c, "numeric") for c in INT_COLUMNS) + tuple(
    (c, "categorical") for c in CAT_COLUMNS)
DEFAULT_TIME_OFFSET = 1_388_534_400  # 2014-01-01 UTC, the year the log was published
PLACEHOLDER_ID = "criteo"
_CRITEO_NAMES = {"ts": "click_ts", "pay_ts": "conversion_ts"}  # raw-log field -> Criteo's
DAY = 86400


@dataclasses.dataclass(frozen=True)
class RefundSynthesis:
    """Synthetic refunds of conversions: probability ``rate``, exponential delay."""

    rate: float
    mean_delay_s: float
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"refund rate {self.rate!r} must be in [0, 1]")
        if self.mean_delay_s <= 0:
            raise ValueError(f"mean refund delay {self.mean_delay_s!r} s must be > 0")

    def refund_ts(self, pay_ts: int, row_id: str) -> Optional[int]:
        rng = random.Random(f"{self.seed}:{row_id}")
        if rng.random() >= self.rate:
            return None
        return pay_ts + int(rng.expovariate(1.0 / self.mean_delay_s))


def _int(field: str, value: str, required: bool) -> Optional[int]:
    value = value.strip()
    if not value:
        if required:
            raise InvalidRow(field, f"missing required field {field!r}")
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRow(field, f"field {field!r}: {value!r} is not an integer") from None


def criteo_row(line: str, row_id: str, time_offset: int = DEFAULT_TIME_OFFSET,
               refunds: Optional[RefundSynthesis] = None) -> dict:
    """One Criteo line -> a raw-log row (column -> str), checked against the raw schema.

    Raises:
      InvalidRow: naming the field and the value (the line's field count, a timestamp, an
        integer feature, or the raw schema's own checks such as the timestamp range).
    """
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 2 + N_INT + N_CAT:
        raise InvalidRow("line", f"line has {len(fields)} tab-separated fields, expected "
                         f"{2 + N_INT + N_CAT}: {line[:80]!r}")
    click = _int("click_ts", fields[0], required=True) + time_offset
    pay = _int("conversion_ts", fields[1], required=False)
    pay = None if pay is None else pay + time_offset
    ints = [_int(name, v, required=False) for name, v in zip(INT_COLUMNS, fields[2:2 + N_INT])]
    refund = refunds.refund_ts(pay, row_id) if refunds and pay is not None else None
    row = {"impression_id": row_id, "user_id": row_id, "item_id": PLACEHOLDER_ID,
           "category_id": PLACEHOLDER_ID, "country": "", "scene": "", "ts": click,
           "click_ts": click, "pay_ts": pay, "refund_ts": refund}
    row.update({n: v for n, v in zip(INT_COLUMNS, ints)})
    row.update({n: v.strip() for n, v in zip(CAT_COLUMNS, fields[2 + N_INT:])})
    row = {k: "" if v is None else str(v) for k, v in row.items()}
    try:
        parse_row(row, EXTRA_PAIRS)
    except InvalidRow as e:  # name the Criteo field, not the raw-log one it became
        reason = e.reason
        for raw_name, criteo_name in _CRITEO_NAMES.items():
            reason = reason.replace(f"'{raw_name}'", f"'{criteo_name}'")
        raise InvalidRow(_CRITEO_NAMES.get(e.field, e.field), reason) from None
    return row


def read_lines(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a local or remote (gs://) file; .gz is decompressed."""
    with FileSystems.open(path) as binary:
        for number, line in enumerate(io.TextIOWrapper(binary, encoding="utf-8"), start=1):
            if line.strip():
                yield number, line


class _ShardedCsv:
    """CSV files of at most ``rows_per_file`` rows: ``<dir>/criteo-00000.csv`` ..."""

    def __init__(self, directory: str, rows_per_file: int):
        self._directory, self._limit = directory, rows_per_file
        self._file, self._writer, self._rows, self.paths = None, None, 0, []

    def write(self, row: dict) -> None:
        if self._writer is None or self._rows >= self._limit:
            self.close()
            path = f"{self._directory}/criteo-{len(self.paths):05d}.csv"
            self._file = io.TextIOWrapper(FileSystems.create(path), encoding="utf-8",
                                          newline="")
            self._writer = csv.DictWriter(self._file, OUTPUT_COLUMNS)
            self._writer.writeheader()
            self._rows = 0
            self.paths.append(path)
        self._writer.writerow(row)
        self._rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._writer = None, None


def pipeline_yaml(refunds: Optional[RefundSynthesis]) -> str:
    note = ("# no synthetic refunds" if refunds is None else
            f"# synthetic refunds: rate {refunds.rate:g}, exponential delay of mean "
            f"{refunds.mean_delay_s / DAY:g} days (an assumption), seed {refunds.seed}")
    lines = ["# ranking-pipeline config for raw logs written by pipelines.io.criteo", note,
             "extra_columns:"]
    lines += [f"  - {{name: {name}, kind: {kind}}}" for name, kind in EXTRA_PAIRS]
    return "\n".join(lines) + "\n"


def convert(input_path: str, output_dir: str, time_offset: int = DEFAULT_TIME_OFFSET,
            refunds: Optional[RefundSynthesis] = None, rows_per_file: int = 1_000_000,
            strict: bool = False) -> dict:
    """Converts one Criteo file; returns the counts (also written as ``summary.json``)."""
    output_dir = output_dir.rstrip("/")
    if not FileSystems.exists(output_dir):
        FileSystems.mkdirs(output_dir)
    out = _ShardedCsv(output_dir, rows_per_file)
    counts = {"lines": 0, "rows_written": 0, "dead_lettered": 0, "conversions": 0,
              "refunds": 0}
    with FileSystems.create(f"{output_dir}/dead_letter.jsonl") as dead:
        try:
            for number, line in read_lines(input_path):
                counts["lines"] += 1
                source = f"{input_path}:{number}"
                try:
                    row = criteo_row(line, f"criteo-{number}", time_offset, refunds)
                except InvalidRow as e:
                    if strict:
                        raise InvalidRow(e.field, f"{source}: {e.reason}") from None
                    counts["dead_lettered"] += 1
                    dead.write((json.dumps({"source": source, "field": e.field,
                                            "reason": e.reason, "raw": line.rstrip("\r\n")})
                                + "\n").encode())
                    continue
                out.write(row)
                counts["rows_written"] += 1
                counts["conversions"] += bool(row["pay_ts"])
                counts["refunds"] += bool(row["refund_ts"])
        finally:
            out.close()
    write_text(f"{output_dir}/pipeline.yaml", pipeline_yaml(refunds))
    summary = {**counts, "files": out.paths, "time_offset": time_offset}
    write_text(f"{output_dir}/summary.json", json.dumps(summary, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.io.criteo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="Criteo conversion log (data.txt[.gz])")
    p.add_argument("--output", required=True, help="directory for the raw-log CSV files")
    p.add_argument("--time-offset", type=int, default=DEFAULT_TIME_OFFSET,
                   help="seconds added to every timestamp (default 2014-01-01 UTC)")
    p.add_argument("--refund-rate", type=float, default=0.0,
                   help="probability that a conversion is refunded (seed 004: 0.14); 0: none")
    p.add_argument("--refund-delay-days", type=float, default=3.0,
                   help="mean of the exponential refund delay in days (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic refunds")
    p.add_argument("--rows-per-file", type=int, default=1_000_000)
    p.add_argument("--strict", action="store_true", help="fail on the first bad line")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.rows_per_file < 1:
        raise SystemExit(f"--rows-per-file {args.rows_per_file!r} must be >= 1")
    try:
        refunds = None if args.refund_rate == 0 else RefundSynthesis(
            args.refund_rate, args.refund_delay_days * DAY, args.seed)
        summary = convert(args.input, args.output, args.time_offset, refunds,
                          args.rows_per_file, args.strict)
    except ValueError as e:  # bad options, or a bad line under --strict: name it, no trace
        raise SystemExit(f"error: {e}") from None
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
