"""The Beam sample builder: raw impression logs -> TFRecord training samples.

Stages (each a transform below):
  1. read every input file and validate each row; bad rows -> dead letter with the reason;
  2. drop impressions not yet observable (``ts >= observe_at``) and key each impression and
     each click by ``(user, time bucket)``;
  3. per user-bucket, the last L clicks (a lifted combine), then per user the carry-in of
     each bucket (last L clicks of earlier buckets): small data;
  4. per user-bucket: sort, merge, point-in-time sequences; hashed crosses computed in
     batches with the model's own TensorFlow op; labels as observed at ``observe_at``;
  5. write sharded TFRecords of ``tf.train.Example``, the dead letter, ``schema.json``;
     the CLI adds ``summary.json`` with the counters.
"""
from __future__ import annotations

import json
from typing import Iterable, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipelines.config import SampleConfig
from pipelines.io.readers import RawRecord, read_records
from pipelines.samples import example as example_lib
from pipelines.samples.labels import observed_labels
from pipelines.samples.sequences import (LastClicksFn, bucket_of, carry_ins,
                                         point_in_time_sequences)
from pipelines.schema.raw_log import Impression, InvalidRow, parse_row

NAMESPACE = "samples"
DEAD_LETTER = "dead_letter"
SAMPLES_DIR, DEAD_LETTER_DIR = "samples", "dead_letter"


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


class ReadRecords(beam.DoFn):
    """File path -> its RawRecords (one file per element; shard inputs for parallelism)."""

    def __init__(self, input_format: str):
        self._format = input_format
        self._rows_read = _counter("rows_read")

    def process(self, path: str) -> Iterable[RawRecord]:
        for record in read_records(path, self._format):
            self._rows_read.inc()
            yield record


class ValidateRows(beam.DoFn):
    """RawRecord -> Impression, or a dead-letter dict naming the problem (tag DEAD_LETTER)."""

    def __init__(self, extra_pairs):
        self._extras = extra_pairs
        self._valid = _counter("valid_rows")
        self._dead = _counter("dead_lettered")

    def process(self, record: RawRecord):
        if record.error is not None:
            self._dead.inc()
            _counter("dead_letter.undecodable").inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {
                "source": record.source, "reason": record.error, "raw": record.raw})
            return
        try:
            impression = parse_row(record.row, self._extras)
        except InvalidRow as e:
            self._dead.inc()
            _counter(f"dead_letter.{e.field}").inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {
                "source": record.source, "reason": e.reason, "row": record.row})
            return
        self._valid.inc()
        yield impression


def key_events(impression: Impression, observe_at: int, bucket_seconds: int):
    """Impression -> ("i", (user, bucket), impression) and, if clicked, ("c", ..., click)."""
    if impression.ts >= observe_at:
        _counter("not_yet_observable").inc()
        return
    user = impression.user_id
    yield "i", (user, bucket_of(impression.ts, bucket_seconds)), impression
    if impression.click_ts is not None and impression.click_ts < observe_at:
        yield "c", (user, bucket_of(impression.click_ts, bucket_seconds)), (
            impression.click_ts, impression.item_id, impression.category_id)


class DistinctFn(beam.CombineFn):
    def create_accumulator(self):
        return set()

    def add_input(self, acc, x):
        acc.add(x)
        return acc

    def merge_accumulators(self, accs):
        return set().union(*accs)

    def extract_output(self, acc):
        return sorted(acc)


class BuildSamples(beam.DoFn):
    """One user-bucket -> serialized tf.Examples.

    Samples are buffered and their crosses hashed ``batch_size`` at a time: one TensorFlow
    call per batch costs ~0.06 us per string, one per user-bucket ~60 us of overhead.
    """

    def __init__(self, config: SampleConfig, observe_at: int, with_truth: bool,
                 batch_size: int = 2048):
        self._config = config
        self._observe_at = observe_at
        self._with_truth = with_truth
        self._batch_size = batch_size
        self._specs = example_lib.sample_schema(config, with_truth)
        self._written = _counter("samples_written")
        self._positives = {n: _counter(f"label.{n}") for n in ("click", "pay", "refund",
                                                                   "net_pay")}

    def setup(self):
        from ranking.features import crossing  # TensorFlow, imported on the worker

        self._cross = crossing.cross_hash_numpy

    def start_bundle(self):
        self._buffer: list[dict] = []

    def process(self, keyed_groups):
        _, groups = keyed_groups
        impressions = list(groups["impressions"])
        carry = next(iter(groups["carry"]), [])
        sequences = point_in_time_sequences(
            [imp[0].ts for imp in impressions], groups["clicks"], carry,
            self._config.sequence.length)
        for (impression, truth), sequence in zip(impressions, sequences):
            self._buffer.append(self._sample(impression, truth, sequence))
        if len(self._buffer) >= self._batch_size:
            yield from self._flush()

    def finish_bundle(self):
        for serialized in self._flush():
            yield GlobalWindows.windowed_value(serialized)

    def _sample(self, imp: Impression, truth: Optional[dict], sequence) -> dict:
        L = self._config.sequence.length
        pad = L - len(sequence)
        sample = {
            "impression_id": imp.impression_id, "user_id": imp.user_id,
            "item_id": imp.item_id, "category_id": imp.category_id,
            "country": imp.country, "scene": imp.scene, "domain": imp.domain, "ts": imp.ts,
            "seq_item_ids": [c[1] for c in sequence] + [example_lib.PAD_STRING] * pad,
            "seq_category_ids": [c[2] for c in sequence] + [example_lib.PAD_STRING] * pad,
            "seq_click_ts": [c[0] for c in sequence] + [example_lib.PAD_INT] * pad,
            "seq_length": len(sequence),
            "last_click_item_id": sequence[0][1] if sequence else example_lib.PAD_STRING,
            "last_click_category_id": sequence[0][2] if sequence else example_lib.PAD_STRING,
            "observe_at": self._observe_at,
        }
        sample.update(imp.extras)
        sample.update(observed_labels(imp.click_ts, imp.pay_ts, imp.refund_ts,
                                      self._observe_at))
        if self._with_truth:
            sample.update(truth or _missing_truth())
        return sample

    def _flush(self) -> Iterable[bytes]:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        crosses = self._config.crosses
        for field, target, seq, buckets in (
                ("cross_seq_item_x_item", "item_id", "seq_item_ids", crosses.item_buckets),
                ("cross_seq_category_x_category", "category_id", "seq_category_ids",
                 crosses.category_buckets)):
            ids = self._cross(np.array([s[seq] for s in batch], dtype=object),
                              np.array([s[target] for s in batch], dtype=object), buckets)
            for sample, row in zip(batch, ids.tolist()):
                sample[field] = row
        for sample in batch:
            for name, counter in self._positives.items():
                if sample[name]:
                    counter.inc()
            self._written.inc()
            yield example_lib.encode(sample, self._specs)


def _missing_truth() -> dict:
    _counter("truth_missing").inc()
    return {**{n: float("nan") for n in example_lib.TRUTH_FLOATS},
            **{n: "" for n in example_lib.TRUTH_STRINGS}}


def parse_truth(record: RawRecord):
    """A truth-file row -> (impression_id, {p_click, p_pay, p_refund, user_tier})."""
    row = record.row or {}
    truth = {n: float(row[n]) for n in example_lib.TRUTH_FLOATS}
    truth.update({n: str(row.get(n, "")) for n in example_lib.TRUTH_STRINGS})
    return str(row["impression_id"]), truth


def _attach_truth(kv):
    _, groups = kv
    truth = next(iter(groups["truth"]), None)
    for impression in groups["impressions"]:
        yield impression, truth


class BuildSampleSet(beam.PTransform):
    """Raw-log file paths -> ``{"samples": serialized tf.Examples, "dead_letter": dicts}``."""

    def __init__(self, config: SampleConfig, observe_at: int,
                 truth_paths: Optional[list[str]] = None):
        super().__init__()
        self._config = config
        self._observe_at = observe_at
        self._truth_paths = truth_paths

    def expand(self, paths):
        cfg = self._config
        records = (paths | "ShuffleFiles" >> beam.Reshuffle()
                   | "Read" >> beam.ParDo(ReadRecords(cfg.input_format)))
        checked = records | "Validate" >> beam.ParDo(
            ValidateRows(cfg.extra_pairs)).with_outputs(DEAD_LETTER, main="valid")
        impressions = checked.valid | "AttachTruth" >> self._truth(paths.pipeline)
        events = impressions | "KeyEvents" >> beam.FlatMap(
            lambda it: ((kind, key, (it[0], it[1]) if kind == "i" else value)
                        for kind, key, value in key_events(
                            it[0], self._observe_at, cfg.sequence.bucket_seconds)))
        by_kind = events | "SplitEvents" >> beam.Partition(
            lambda e, _: 0 if e[0] == "i" else 1, 2)
        imps = by_kind[0] | "ImpressionKV" >> beam.Map(lambda e: (e[1], e[2]))
        clicks = by_kind[1] | "ClickKV" >> beam.Map(lambda e: (e[1], e[2]))
        carry = self._carry_ins(imps, clicks)
        samples = ({"impressions": imps, "clicks": clicks, "carry": carry}
                   | "GroupUserBucket" >> beam.CoGroupByKey()
                   | "BuildSamples" >> beam.ParDo(BuildSamples(
                       cfg, self._observe_at, with_truth=bool(self._truth_paths))))
        return {"samples": samples, "dead_letter": checked[DEAD_LETTER]}

    def _truth(self, pipeline):
        if not self._truth_paths:
            return beam.Map(lambda imp: (imp, None))

        truth_paths = self._truth_paths

        @beam.ptransform_fn
        def attach(impressions):
            truth = (pipeline | "TruthFiles" >> beam.Create(truth_paths)
                     | "ReadTruth" >> beam.FlatMap(read_records)
                     | "ParseTruth" >> beam.Map(parse_truth))
            keyed = impressions | "ById" >> beam.Map(lambda imp: (imp.impression_id, imp))
            return ({"impressions": keyed, "truth": truth} | "JoinTruth" >> beam.CoGroupByKey()
                    | "Attach" >> beam.FlatMap(_attach_truth))

        return attach()

    def _carry_ins(self, imps, clicks):
        L = self._config.sequence.length
        tails = (clicks | "BucketTails" >> beam.CombinePerKey(LastClicksFn(L))
                 | "TailByUser" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))))
        buckets = (imps | "UserBucket" >> beam.Map(lambda kv: kv[0])
                   | "ImpressionBuckets" >> beam.CombinePerKey(DistinctFn()))
        return ({"tails": tails, "buckets": buckets} | "GroupUser" >> beam.CoGroupByKey()
                | "CarryIns" >> beam.FlatMap(_carry_ins_of_user, L))


def _carry_ins_of_user(kv, length: int):
    user, groups = kv
    impression_buckets = next(iter(groups["buckets"]), [])
    for bucket, carry in carry_ins(groups["tails"], impression_buckets, length):
        if carry:
            yield (user, bucket), carry


def dead_letter_line(record: dict) -> str:
    return json.dumps(record, default=str, sort_keys=True)
