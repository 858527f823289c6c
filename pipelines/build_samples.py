"""The Beam sample builder: raw impression logs -> TFRecord training samples.

Stages (each a transform below):
  1. per input file, read and validate each row (bad rows -> dead letter with the reason),
     drop impressions not yet observable (``ts >= observe_at``) and key each impression and
     each click by ``(user, time bucket)``: one fused step;
  2. per user-bucket, a history summary (counts, last K impressions, last L clicks),
     pre-combined per bundle and then across bundles; per user, the carry-in of each bucket
     (the summary of all earlier buckets) and, with the ``category_purchase`` label, its
     carry-out (the user's known pays its impressions' windows may hold): small data;
  3. one shuffle by user-bucket of impressions, clicks, carry-ins, carry-outs and (simulated
     data) truth rows; per group: sort, merge, point-in-time sequences and counts; hashed
     crosses computed in batches with the model's own TensorFlow op; labels as observed at
     ``observe_at``;
  4. write TFRecords of ``tf.train.Example``, one set of files per UTC day of ``ts``
     (:mod:`pipelines.io.sample_files`), the dead letter, ``schema.json``; the CLI adds
     ``summary.json`` with the counters.
"""
from __future__ import annotations

import json
from typing import Iterable, NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from pipelines.config import SampleConfig
from pipelines.io.readers import RawRecord, read_records
from pipelines.samples import example as example_lib
from pipelines.samples.category_affinity import (RELATED_CLICK_COUNT, RELATED_IMP_COUNT,
                                                 RelatedCategories, UserExposureCounter,
                                                 related_count)
from pipelines.samples.category_purchase import LABEL as CATEGORY_PURCHASE
from pipelines.samples.category_purchase import (category_purchase_labels, known_pay,
                                                 pays_by_bucket)
from pipelines.samples.item_stats import (ItemDayCounter, ItemWindowStats, WindowImpressionTotals,
                                          impressions_per_million)
from pipelines.samples.labels import EVENT_TS, LABELS, observed_labels
from pipelines.samples.sequences import (EMPTY_HISTORY, HistoryBuilder, HistoryLengths,
                                         MergeHistoriesFn, bucket_of, carry_ins,
                                         point_in_time)
from pipelines.schema.raw_log import Impression, InvalidRow, domain_of, parse_row
from ranking.data.layout import day_of

NAMESPACE = "samples"
DOMAIN_FEATURES = ("country", "scene", "domain")
# The padded click sequences the row encoder crosses (from _EncodedSequence, not the row).
_CLICK_SEQUENCES = ("seq_item_ids", "seq_category_ids")
DEAD_LETTER, HISTORIES, ITEM_DAYS, PAYS = "dead_letter", "histories", "item_days", "pays"
USER_EXPOSURE = "user_exposure"
# A bundle's history summaries and packed events are emitted when this many user-buckets are
# open or this many events are packed (bounds the memory of a bundle of many files).
MAX_OPEN_HISTORIES = 50_000
MAX_PACKED_EVENTS = 200_000
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
    the work itself. Outputs, keyed by ``(user_id, time bucket)`` but PAYS:
      main: ``("e", (impression payloads, clicks))`` per user-bucket of this bundle: its
        observable impressions (``ts < observe_at``) and the clicks known at ``observe_at``,
        bucketed by ``click_ts``; packed because most of a user's rows share a bundle, and
        one shuffled element per user-bucket costs less than one per event;
      HISTORIES: per user-bucket, the :class:`History` summary of this bundle's impressions
        and clicks in it (pre-combined here: one element per user-bucket, not per event);
      ITEM_DAYS: per (item, day), this bundle's impressions and clicks of the item that day;
      PAYS (with ``emit_pays``): ``(user_id, (pay_ts, category_id))`` per pay known at
        ``observe_at``, for the ``category_purchase`` label (keyed by user alone: the
        per-user step sends each pay to the buckets whose windows hold it);
      USER_EXPOSURE (with ``emit_user_categories``): per user, this bundle's impressions of
        the user by UTC day and category, for the related categories of ``category_affinity``.
    The impression payload is a plain tuple (Beam's fast coder), the Impression minus
    ``user_id`` (in the key) with the extra columns' values only.
    """

    def __init__(self, input_format: str, extra_pairs, observe_at: int, bucket_seconds: int,
                 lengths: HistoryLengths, emit_pays: bool = False,
                 emit_user_categories: bool = False):
        self._read = ReadRecords(input_format)
        self._emit_pays = emit_pays
        self._emit_user_categories = emit_user_categories
        self._lengths = lengths
        self._extras = extra_pairs
        self._observe_at = observe_at
        self._bucket_seconds = bucket_seconds
        self._valid = _counter("valid_rows")
        self._dead = _counter("dead_lettered")
        self._future = _counter("not_yet_observable")

    def start_bundle(self):
        self._histories = HistoryBuilder(self._lengths)
        self._item_days = ItemDayCounter()
        self._user_exposure = UserExposureCounter()
        self._packed: dict[tuple, tuple[list, list]] = {}
        self._packed_events = 0

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
            open_keys = (len(self._histories) + len(self._item_days) + len(self._user_exposure)
                         + len(self._packed))
            if open_keys >= MAX_OPEN_HISTORIES or self._packed_events >= MAX_PACKED_EVENTS:
                yield from self._drain(lambda keyed: keyed)

    def _events(self, imp: Impression):
        key = (imp.user_id, bucket_of(imp.ts, self._bucket_seconds))
        self._histories.add_impression(key, (imp.ts, imp.item_id, imp.category_id))
        self._item_days.add(imp.item_id, imp.ts, 0)
        if self._emit_user_categories:
            self._user_exposure.add(imp.user_id, day_of(imp.ts), imp.category_id)
        self._pack(key, 0, impression_payload(imp))
        if self._emit_pays:
            pay = known_pay(imp, self._observe_at)
            if pay is not None:
                yield beam.pvalue.TaggedOutput(PAYS, (imp.user_id, pay))
        if imp.click_ts is not None and imp.click_ts < self._observe_at:
            click_key = (imp.user_id, bucket_of(imp.click_ts, self._bucket_seconds))
            click = (imp.click_ts, imp.item_id, imp.category_id)
            self._histories.add_click(click_key, click)
            self._item_days.add(imp.item_id, imp.click_ts, 1)
            self._pack(click_key, 1, click)

    def _pack(self, key: tuple, kind: int, event: tuple) -> None:
        events = self._packed.get(key)
        if events is None:
            events = self._packed[key] = ([], [])
        events[kind].append(event)
        self._packed_events += 1

    def finish_bundle(self):
        yield from self._drain(GlobalWindows.windowed_value)

    def _drain(self, wrap):
        packed, self._packed, self._packed_events = self._packed, {}, 0
        for key, events in packed.items():
            yield wrap((key, ("e", events)))
        for keyed in self._histories.drain():
            yield beam.pvalue.TaggedOutput(HISTORIES, wrap(keyed))
        for keyed in self._item_days.drain():
            yield beam.pvalue.TaggedOutput(ITEM_DAYS, wrap(keyed))
        for keyed in self._user_exposure.drain():
            yield beam.pvalue.TaggedOutput(USER_EXPOSURE, wrap(keyed))


def impression_payload(imp: Impression) -> tuple:
    return (imp.impression_id,) + tuple(imp[2:10]) + (tuple(v for _, v in imp.extras),)


class BuildSamples(beam.DoFn):
    """One user-bucket -> serialized tf.Examples.

    Samples are buffered and their crosses hashed ``batch_size`` at a time: one TensorFlow
    call per batch costs ~0.06 us per string, one per user-bucket ~60 us of overhead.
    Encoding is the hottest loop, so a sample is the concatenation of separately encoded
    feature groups (``tf.train.Features`` encodings concatenate): the target-independent
    sequence features once per distinct sequence (most consecutive impressions of a user
    share one); labels with event times, the domain, and the extra columns once per distinct
    value combination (most impressions are not clicked: one label encoding serves them all);
    only the per-impression rest each time.
    """

    def __init__(self, config: SampleConfig, observe_at: int, with_truth: bool,
                 batch_size: int = 2048):
        self._config = config
        self._observe_at = observe_at
        self._with_truth = with_truth
        self._batch_size = batch_size
        purchase = config.category_purchase
        self._purchase_window = purchase.window_seconds if purchase.enabled else None
        self._extra_names = tuple(c.name for c in config.extra_columns)
        self._positive_names = LABELS + ((CATEGORY_PURCHASE,) if purchase.enabled else ())
        label_names = self._positive_names + EVENT_TS + ("observe_at",)
        specs = example_lib.sample_schema(config, with_truth)
        by_name = {f.name: f for f in specs}
        grouped = set(example_lib.SEQUENCE_FEATURES) | set(label_names) | set(
            DOMAIN_FEATURES) | set(self._extra_names)
        encoder = example_lib.make_features_encoder
        self._encode_sequence = encoder([by_name[n] for n in example_lib.SEQUENCE_FEATURES])
        self._row_specs = [f for f in specs if f.name not in grouped]
        self._encode_labels = encoder([by_name[n] for n in label_names])
        self._encode_domain = encoder([by_name[n] for n in DOMAIN_FEATURES])
        self._extras_group = example_lib.make_group_encoder(
            [by_name[n] for n in self._extra_names])
        self._written = _counter("samples_written")
        self._positives = [_counter(f"label.{n}") for n in self._positive_names]

    def setup(self):
        self._encode_rows = self._make_row_encoder()
        self._labels_group = example_lib.memoized(self._encode_label_group)
        self._domain_group = example_lib.memoized(self._encode_domain_group)

    def start_bundle(self):
        self._buffer: list[_Row] = []

    def process(self, keyed_events, item_stats, window_totals, related_categories):
        (user_id, _), events = keyed_events
        impressions, clicks, carry, truth, pays = [], [], EMPTY_HISTORY, {}, []
        for tag, value in events:
            if tag == "e":
                impressions.extend(value[0])
                clicks.extend(value[1])
            elif tag == "t":
                truth[value[0]] = value[1]
            elif tag == "p":
                pays.extend(value)
            else:
                carry = value
        if not impressions:  # truth rows of impressions at or after observe_at
            return
        # Payload positions: 1 item_id, 2 category_id, 5 ts (see impression_payload).
        imp_ts = [imp[5] for imp in impressions]
        sequences, click_counts = point_in_time(
            imp_ts, clicks, carry.click_tail, carry.clicks, self._config.sequence.length)
        exposures, imp_counts = point_in_time(
            imp_ts, [(imp[5], imp[1], imp[2]) for imp in impressions], carry.impression_tail,
            carry.impressions, self._config.sequence.impression_length)
        purchases = None if self._purchase_window is None else category_purchase_labels(
            [(imp[5], imp[2]) for imp in impressions], pays, self._purchase_window)
        encoded: dict[int, _EncodedSequence] = {}  # by id(): equal sequences share a list
        pad = [example_lib.PAD_STRING] * self._config.sequence.impression_length
        for i, (payload, sequence) in enumerate(zip(impressions, sequences)):
            seq = encoded.get(id(sequence)) or encoded.setdefault(
                id(sequence), self._encode_seq(sequence))
            # Payload: 0 impression_id, 1 item_id, 2 category_id, 3 country, 4 scene, 5 ts,
            # 6 click_ts, 7 pay_ts, 8 refund_ts, 9 extra values (see impression_payload).
            item_id, ts = payload[1], payload[5]
            row = {"impression_id": payload[0], "user_id": user_id, "item_id": item_id,
                   "category_id": payload[2], "ts": ts,
                   "seq_imp_category_ids": ([e[2] for e in exposures[i]]
                                            + pad[len(exposures[i]):]),
                   "imp_count": imp_counts[i], "click_count": click_counts[i]}
            day = day_of(ts)
            row["item_imp_count"], row["item_click_count"] = item_stats.get((item_id, day), (0, 0))
            row["item_imp_per_million"] = impressions_per_million(
                row["item_imp_count"], window_totals.get(day, 0))
            if related_categories is not None:
                self._add_related_counts(row, sequence, exposures[i],
                                         related_categories.get(day, {}))
            if self._with_truth:
                found = truth.get(payload[0])
                row.update(_truth_features(found) if found else _missing_truth())
            self._buffer.append(_Row(row, seq, payload,
                                     None if purchases is None else purchases[i]))
        if len(self._buffer) >= self._batch_size:
            yield from self._flush()

    def _add_related_counts(self, row: dict, clicks, exposures, related) -> None:
        target = row["category_id"]
        recent = clicks[:self._config.category_affinity.recent_clicks]
        row[RELATED_CLICK_COUNT] = related_count((e[2] for e in recent), target, related)
        row[RELATED_IMP_COUNT] = related_count((e[2] for e in exposures), target, related)

    def finish_bundle(self):
        for pair in self._flush():
            yield GlobalWindows.windowed_value(pair)

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

    def _make_row_encoder(self):
        """One graph call per batch: the crosses hashed with the model's own op
        (:func:`ranking.features.crossing.cross_hash`) and every per-impression feature
        serialized (:mod:`pipelines.samples.batch_encoding`)."""
        import tensorflow as tf  # imported on the worker

        from pipelines.samples import batch_encoding
        from ranking.features import crossing
        from ranking.features.raw import CROSSES  # the serving graph's own cross definitions

        specs = self._row_specs
        # (cross feature, sequence, target, buckets); the sequences are padded to their length.
        crosses = [(f.name, *CROSSES[f.name], f.buckets) for f in specs if f.role == "cross"]
        crossed = {c[0] for c in crosses}
        length = self._config.sequence.length
        signature = batch_encoding.input_signature([s for s in specs if s.name not in crossed])
        signature.update({name: tf.TensorSpec([None, length], tf.string, name=name)
                          for name in _CLICK_SEQUENCES})

        @tf.function(input_signature=[signature])
        def encode(columns):
            columns = dict(columns)
            for field, sequence, target, buckets in crosses:
                columns[field] = crossing.cross_hash(columns[sequence], columns[target], buckets)
            return batch_encoding.encode_features_batch(specs, columns)

        def to_tensors(columns):  # here: tf.function would walk nested lists value by value
            return {name: tf.constant(values, signature[name].dtype)
                    for name, values in columns.items()}

        row_inputs = [name for name in signature if name not in _CLICK_SEQUENCES]
        return encode, to_tensors, row_inputs

    def _encode_label_group(self, events: tuple) -> tuple[bytes, Optional[tuple]]:
        """(click_ts, pay_ts, refund_ts, category_purchase or None) -> (the labels, event
        times and observe_at encoded, the positive labels' values or None if all are 0)."""
        click_ts, pay_ts, refund_ts, purchase = events
        labels = observed_labels(click_ts, pay_ts, refund_ts, self._observe_at)
        labels["observe_at"] = self._observe_at
        if purchase is not None:
            labels[CATEGORY_PURCHASE] = purchase
        positives = tuple(labels[n] for n in self._positive_names)
        return self._encode_labels(labels), positives if any(positives) else None

    def _encode_domain_group(self, country_scene: tuple) -> bytes:
        country, scene = country_scene
        return self._encode_domain(
            {"country": country, "scene": scene, "domain": domain_of(country, scene)})

    def _flush(self) -> Iterable[tuple[int, bytes]]:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        encode, to_tensors, row_inputs = self._encode_rows
        columns = {name: [r.row[name] for r in batch] for name in row_inputs}
        item_ids, category_ids = _CLICK_SEQUENCES
        columns[item_ids] = [r.seq.item_ids for r in batch]
        columns[category_ids] = [r.seq.category_ids for r in batch]
        encoded_rows = encode(to_tensors(columns)).numpy().tolist()
        counts = [0] * len(self._positives)
        for (_, seq, payload, purchase), encoded in zip(batch, encoded_rows):
            labels, positives = self._labels_group(
                (payload[6], payload[7], payload[8], purchase))
            if positives is not None:
                counts = [c + p for c, p in zip(counts, positives)]
            yield day_of(payload[5]), example_lib.wrap_example(b"".join((
                seq.features, encoded, labels,
                self._domain_group((payload[3], payload[4])), self._extras_group(payload[9]))))
        self._written.inc(len(batch))
        for counter, count in zip(self._positives, counts):
            counter.inc(count)


class _Row(NamedTuple):
    """A buffered sample: its per-impression features but the crosses, its encoded
    sequence, the impression payload and its category_purchase label (or None)."""

    row: dict
    seq: "_EncodedSequence"
    payload: tuple
    purchase: Optional[int]


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
    """Raw-log file paths -> ``{"samples": (UTC day of ts, serialized tf.Example) pairs,
    "dead_letter": dicts, "related_categories": (day, {category: related set}) pairs, or None
    without category_affinity}``."""

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
                    cfg.input_format, cfg.extra_pairs, self._observe_at, bucket_seconds,
                    history_lengths(cfg), emit_pays=cfg.category_purchase.enabled,
                    emit_user_categories=cfg.category_affinity.enabled))
                .with_outputs(DEAD_LETTER, HISTORIES, ITEM_DAYS, PAYS, USER_EXPOSURE,
                              main="events"))
        item_stats = read[ITEM_DAYS] | "ItemStats" >> ItemWindowStats(cfg.item_stats.window_days)
        window_totals = read[ITEM_DAYS] | "WindowTotals" >> WindowImpressionTotals(
            cfg.item_stats.window_days)
        tables = None
        if cfg.category_affinity.enabled:
            affinity = cfg.category_affinity
            # Through the day after the last sample day: that table is the serving one.
            tables = read[USER_EXPOSURE] | "RelatedCategories" >> RelatedCategories(
                day_of(self._observe_at - 1) + 1, affinity.top_n,
                affinity.min_user_impressions, affinity.own_top)
        parts = [read.events, self._carry_ins(read[HISTORIES], read[PAYS])]
        if self._truth_paths:
            parts.append(paths.pipeline | "TruthFiles" >> beam.Create(self._truth_paths)
                         | "ReadTruth" >> beam.ParDo(KeyTruth(bucket_seconds)))
        samples = (parts | "AllEvents" >> beam.Flatten()
                   | "GroupUserBucket" >> beam.GroupByKey()
                   | "BuildSamples" >> beam.ParDo(
                       BuildSamples(cfg, self._observe_at, with_truth=bool(self._truth_paths)),
                       item_stats=beam.pvalue.AsDict(item_stats),
                       window_totals=beam.pvalue.AsDict(window_totals),
                       related_categories=None if tables is None else beam.pvalue.AsDict(tables)))
        return {"samples": samples, "dead_letter": read[DEAD_LETTER],
                "related_categories": tables}

    def _carry_ins(self, histories, pays):
        """Per user-bucket with impressions: ``("carry", History of all earlier buckets)``;
        with the category_purchase label also ``("p", pays)``, its carry-out."""
        lengths = history_lengths(self._config)
        by_user = (histories | "MergeHistories" >> beam.CombinePerKey(MergeHistoriesFn(lengths))
                   | "HistoryByUser" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1]))))
        purchase = self._config.category_purchase
        if not purchase.enabled:
            return (by_user | "GroupUser" >> beam.GroupByKey()
                    | "CarryIns" >> beam.FlatMap(_carry_ins_of_user, lengths))
        return ({HISTORIES: by_user, PAYS: pays} | "GroupUser" >> beam.CoGroupByKey()
                | "CarryInsAndOuts" >> beam.FlatMap(
                    _carry_ins_and_outs_of_user, lengths, purchase.window_seconds,
                    self._config.sequence.bucket_seconds))


def history_lengths(config: SampleConfig) -> HistoryLengths:
    return HistoryLengths(config.sequence.impression_length, config.sequence.length)


def _carry_ins_of_user(kv, lengths: HistoryLengths):
    user, histories = kv
    for bucket, carry in carry_ins(histories, lengths):
        if carry.impressions or carry.clicks:
            yield (user, bucket), ("carry", carry)


def _carry_ins_and_outs_of_user(kv, lengths: HistoryLengths, window_seconds: int,
                                bucket_seconds: int):
    user, grouped = kv
    histories = list(grouped[HISTORIES])
    yield from _carry_ins_of_user((user, histories), lengths)
    buckets = [bucket for bucket, history in histories if history.impressions]
    for bucket, pays in pays_by_bucket(buckets, grouped[PAYS], window_seconds, bucket_seconds):
        yield (user, bucket), ("p", pays)


def dead_letter_line(record: dict) -> str:
    return json.dumps(record, default=str, sort_keys=True)
