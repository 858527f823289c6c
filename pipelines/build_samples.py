"""The Beam sample builder: raw impression logs -> TFRecord training samples.

Stages (each a transform below):
  1. per input file, read and validate each row (bad rows -> dead letter with the reason),
     drop impressions not yet observable (``ts >= observe_at``) and key each impression and
     each click by ``(user, time bucket)``: one fused step;
  2. per user-bucket, the last L clicks (a lifted combine), then per user the carry-in of
     each bucket (last L clicks of earlier buckets): small data;
  3. one shuffle by user-bucket of impressions, clicks, carry-ins and (simulated data) truth
     rows; per group: sort, merge, point-in-time sequences; hashed crosses computed in
     batches with the model's own TensorFlow op; labels as observed at ``observe_at``;
  4. write sharded TFRecords of ``tf.train.Example``, the dead letter, ``schema.json``;
     the CLI adds ``summary.json`` with the counters.
"""
from __future__ import annotations

import json
from typing import Iterable, NamedTuple, Optional

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipelines.config import SampleConfig
from pipelines.io.readers import RawRecord, read_records
from pipelines.samples import example as example_lib
from pipelines.samples.labels import LABELS, observed_labels
from pipelines.samples.sequences import (LastClicksFn, bucket_of, carry_ins,
                                         point_in_time_sequences)
from pipelines.schema.raw_log import Impression, InvalidRow, parse_row

NAMESPACE = "samples"
DEAD_LETTER, CLICKS, BUCKETS = "dead_letter", "clicks", "buckets"
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


def validate(record: RawRecord, extra_pairs) -> Impression:
    """RawRecord -> Impression; raises InvalidRow naming the field for any bad row."""
    if record.error is not None:
        raise InvalidRow("undecodable", record.error)
    return parse_row(record.row, extra_pairs)


def dead_letter(record: RawRecord, problem: InvalidRow) -> dict:
    entry = {"source": record.source, "reason": problem.reason}
    entry.update({"row": record.row} if record.row is not None else {"raw": record.raw})
    return entry


class ReadValidateKey(beam.DoFn):
    """File path -> keyed events of its valid rows; bad rows -> dead letter (tag DEAD_LETTER).

    One fused step, because each Beam step costs a few microseconds per element, as much as
    the work itself. Outputs, all keyed by ``(user_id, time bucket)``:
      main: ``("i", impression payload)`` per observable impression (``ts < observe_at``)
        and ``("c", click)`` per click known at ``observe_at``, bucketed by ``click_ts``;
      CLICKS: the same clicks, for the per-bucket tails;
      BUCKETS: the distinct user-buckets holding impressions, deduplicated per bundle.
    The impression payload is a plain tuple (Beam's fast coder), the Impression minus
    ``user_id`` (in the key) with the extra columns' values only.
    """

    def __init__(self, input_format: str, extra_pairs, observe_at: int, bucket_seconds: int):
        self._read = ReadRecords(input_format)
        self._extras = extra_pairs
        self._observe_at = observe_at
        self._bucket_seconds = bucket_seconds
        self._valid = _counter("valid_rows")
        self._dead = _counter("dead_lettered")
        self._future = _counter("not_yet_observable")

    def start_bundle(self):
        self._buckets: set = set()

    def process(self, path: str):
        for record in self._read.process(path):
            try:
                imp = validate(record, self._extras)
            except InvalidRow as e:
                self._dead.inc()
                _counter(f"dead_letter.{e.field}").inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(record, e))
                continue
            self._valid.inc()
            if imp.ts >= self._observe_at:
                self._future.inc()
                continue
            yield from self._events(imp)

    def _events(self, imp: Impression):
        key = (imp.user_id, bucket_of(imp.ts, self._bucket_seconds))
        self._buckets.add(key)
        yield key, ("i", impression_payload(imp))
        if imp.click_ts is not None and imp.click_ts < self._observe_at:
            click_key = (imp.user_id, bucket_of(imp.click_ts, self._bucket_seconds))
            click = (imp.click_ts, imp.item_id, imp.category_id)
            yield click_key, ("c", click)
            yield beam.pvalue.TaggedOutput(CLICKS, (click_key, click))

    def finish_bundle(self):
        for key in self._buckets:
            yield beam.pvalue.TaggedOutput(BUCKETS, GlobalWindows.windowed_value(key))
        self._buckets = set()


def impression_payload(imp: Impression) -> tuple:
    return (imp.impression_id,) + tuple(imp[2:10]) + (tuple(v for _, v in imp.extras),)


def impression_from_payload(user_id: str, payload, extra_names) -> Impression:
    return Impression(payload[0], user_id, *payload[1:9],
                      tuple(zip(extra_names, payload[9])))


class BuildSamples(beam.DoFn):
    """One user-bucket -> serialized tf.Examples.

    Samples are buffered and their crosses hashed ``batch_size`` at a time: one TensorFlow
    call per batch costs ~0.06 us per string, one per user-bucket ~60 us of overhead. The
    target-independent sequence features are encoded once per distinct sequence (most
    consecutive impressions of a user share one) and concatenated with the rest.
    """

    def __init__(self, config: SampleConfig, observe_at: int, with_truth: bool,
                 batch_size: int = 2048):
        self._config = config
        self._observe_at = observe_at
        self._with_truth = with_truth
        self._batch_size = batch_size
        specs = example_lib.sample_schema(config, with_truth)
        seq_names = set(example_lib.SEQUENCE_FEATURES)
        self._encode_sequence = example_lib.make_features_encoder(
            [f for f in specs if f.name in seq_names])
        self._encode_rest = example_lib.make_features_encoder(
            [f for f in specs if f.name not in seq_names])
        self._extra_names = tuple(c.name for c in config.extra_columns)
        self._written = _counter("samples_written")
        self._positives = {n: _counter(f"label.{n}") for n in LABELS}

    def setup(self):
        from ranking.features import crossing  # TensorFlow, imported on the worker

        self._cross = crossing.cross_hash_numpy

    def start_bundle(self):
        self._buffer: list[tuple[dict, _EncodedSequence]] = []

    def process(self, keyed_events):
        (user_id, _), events = keyed_events
        impressions, clicks, carry, truth = [], [], [], {}
        for tag, value in events:
            if tag == "i":
                impressions.append(value)
            elif tag == "c":
                clicks.append(value)
            elif tag == "t":
                truth[value[0]] = value[1]
            else:
                carry = value
        if not impressions:  # truth rows of impressions at or after observe_at
            return
        sequences = point_in_time_sequences(
            [imp[5] for imp in impressions], clicks, carry, self._config.sequence.length)
        encoded: dict[int, _EncodedSequence] = {}  # by id(): equal sequences share a list
        names = self._extra_names
        for payload, sequence in zip(impressions, sequences):
            imp = impression_from_payload(user_id, payload, names)
            seq = encoded.get(id(sequence)) or encoded.setdefault(
                id(sequence), self._encode_seq(sequence))
            self._buffer.append((self._sample(imp, truth.get(imp.impression_id)), seq))
        if len(self._buffer) >= self._batch_size:
            yield from self._flush()

    def finish_bundle(self):
        for serialized in self._flush():
            yield GlobalWindows.windowed_value(serialized)

    def _encode_seq(self, sequence) -> "_EncodedSequence":
        pad = self._config.sequence.length - len(sequence)
        features = {
            "seq_item_ids": [c[1] for c in sequence] + [example_lib.PAD_STRING] * pad,
            "seq_category_ids": [c[2] for c in sequence] + [example_lib.PAD_STRING] * pad,
            "seq_click_ts": [c[0] for c in sequence] + [example_lib.PAD_INT] * pad,
            "seq_length": len(sequence),
            "last_click_item_id": sequence[0][1] if sequence else example_lib.PAD_STRING,
            "last_click_category_id": sequence[0][2] if sequence else example_lib.PAD_STRING,
        }
        return _EncodedSequence(features["seq_item_ids"], features["seq_category_ids"],
                                self._encode_sequence(features))

    def _sample(self, imp: Impression, truth: Optional[tuple]) -> dict:
        sample = {
            "impression_id": imp.impression_id, "user_id": imp.user_id,
            "item_id": imp.item_id, "category_id": imp.category_id,
            "country": imp.country, "scene": imp.scene, "domain": imp.domain, "ts": imp.ts,
            "observe_at": self._observe_at,
        }
        sample.update(imp.extras)
        sample.update(observed_labels(imp.click_ts, imp.pay_ts, imp.refund_ts,
                                      self._observe_at))
        if self._with_truth:
            sample.update(_truth_features(truth) if truth else _missing_truth())
        return sample

    def _flush(self) -> Iterable[bytes]:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        crosses = self._config.crosses
        for field, target, seq_field, buckets in (
                ("cross_seq_item_x_item", "item_id", 0, crosses.item_buckets),
                ("cross_seq_category_x_category", "category_id", 1, crosses.category_buckets)):
            ids = self._cross(np.array([seq[seq_field] for _, seq in batch], dtype=object),
                              np.array([s[target] for s, _ in batch], dtype=object), buckets)
            for (sample, _), row in zip(batch, ids.tolist()):
                sample[field] = row
        positives = dict.fromkeys(self._positives, 0)
        for sample, seq in batch:
            for name in positives:
                positives[name] += sample[name]
            yield example_lib.wrap_example(seq.features + self._encode_rest(sample))
        self._written.inc(len(batch))
        for name, count in positives.items():
            self._positives[name].inc(count)


class _EncodedSequence(NamedTuple):
    item_ids: list   # padded, for the crosses
    category_ids: list
    features: bytes  # the SEQUENCE_FEATURES as a serialized tf.train.Features


def _missing_truth() -> dict:
    _counter("truth_missing").inc()
    return {**{n: float("nan") for n in example_lib.TRUTH_FLOATS},
            **{n: "" for n in example_lib.TRUTH_STRINGS}}


def _truth_features(truth: tuple) -> dict:
    return dict(zip(example_lib.TRUTH_FLOATS + example_lib.TRUTH_STRINGS, truth))


class KeyTruth(beam.DoFn):
    """A truth-file path -> ``((user_id, bucket), ("t", (impression_id, truth values)))``.

    Truth rows carry ``user_id`` and ``ts`` so they meet their impression in the same
    user-bucket group as its sequence, without a join of their own.
    """

    def __init__(self, bucket_seconds: int):
        self._bucket_seconds = bucket_seconds

    def process(self, path: str):
        for record in read_records(path):
            row = record.row
            try:
                key = (str(row["user_id"]), bucket_of(int(row["ts"]), self._bucket_seconds))
                values = tuple(float(row[n]) for n in example_lib.TRUTH_FLOATS) + tuple(
                    str(row.get(n, "")) for n in example_lib.TRUTH_STRINGS)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"truth file {record.source}: needs impression_id, user_id, "
                                 f"ts, {', '.join(example_lib.TRUTH_FLOATS)}; got {row!r} "
                                 f"({e!r})") from None
            yield key, ("t", (str(row["impression_id"]), values))


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
        bucket_seconds = cfg.sequence.bucket_seconds
        read = (paths | "ShuffleFiles" >> beam.Reshuffle()
                | "ReadValidateKey" >> beam.ParDo(ReadValidateKey(
                    cfg.input_format, cfg.extra_pairs, self._observe_at, bucket_seconds))
                .with_outputs(DEAD_LETTER, CLICKS, BUCKETS, main="events"))
        parts = [read.events, self._carry_ins(read[CLICKS], read[BUCKETS])]
        if self._truth_paths:
            parts.append(paths.pipeline | "TruthFiles" >> beam.Create(self._truth_paths)
                         | "ReadTruth" >> beam.ParDo(KeyTruth(bucket_seconds)))
        samples = (parts | "AllEvents" >> beam.Flatten()
                   | "GroupUserBucket" >> beam.GroupByKey()
                   | "BuildSamples" >> beam.ParDo(BuildSamples(
                       cfg, self._observe_at, with_truth=bool(self._truth_paths))))
        return {"samples": samples, "dead_letter": read[DEAD_LETTER]}

    def _carry_ins(self, clicks, buckets):
        """Per user-bucket with impressions: ``("carry", last L clicks of earlier buckets)``."""
        L = self._config.sequence.length
        tails = (clicks | "BucketTails" >> beam.CombinePerKey(LastClicksFn(L))
                 | "TailByUser" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))))
        return ({"tails": tails, "buckets": buckets} | "GroupUser" >> beam.CoGroupByKey()
                | "CarryIns" >> beam.FlatMap(_carry_ins_of_user, L))


def _carry_ins_of_user(kv, length: int):
    user, groups = kv
    for bucket, carry in carry_ins(groups["tails"], groups["buckets"], length):
        if carry:
            yield (user, bucket), ("carry", carry)


def dead_letter_line(record: dict) -> str:
    return json.dumps(record, default=str, sort_keys=True)
