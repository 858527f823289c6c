"""The Beam transform: serialized sample tf.Examples -> the delayed-feedback stream.

Each sample of the sample builder carries ``click_ts``, ``pay_ts``, ``refund_ts`` (``-1``
when not known by ``observe_at``) and ``observe_at``; the stream of an impression is
computed from those alone (:mod:`pipelines.streams.targets`), so its clock is the sample
set's own ``observe_at`` and nothing later can leak in. Every stream sample is a copy of the
impression's Example with the stream fields appended. The repurchase stream needs every
pay of a (user, item), so it first groups the paid samples by user and item.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from tensorflow.core.example import example_pb2

from pipelines.samples import example as example_lib
from pipelines.samples.labels import EVENT_TS, UNKNOWN_TS
from pipelines.streams.methods import StreamSample
from pipelines.streams.targets import StreamConfig, impression_stream, repurchase_streams
from ranking.losses import stream_fields as sf

NAMESPACE = "samples"  # the sample builder's: the CLI summary collects these counters too
COUNTER_PREFIX = "stream."


def stream_specs() -> list[example_lib.FeatureSpec]:
    """The features a stream adds to each sample (all int64 scalars)."""
    s = example_lib.FeatureSpec
    return [
        s(sf.LABEL, "int64", role="label", description="the stream label as known at "
          "available_at"),
        s(sf.ELAPSED, "int64", role="stream", description="seconds from the origin event "
          "(click; pay for the refund stream) to available_at"),
        s(sf.IN_WINDOW, "int64", role="stream",
          description="1 if the delayed event fell inside the waiting window"),
        s(sf.IS_DUPLICATE, "int64", role="stream", description="1 for a re-ingested copy"),
        s(sf.DELAYED_POSITIVE, "int64", role="stream",
          description="1 for a positive duplicate whose event came after the window"),
        s(sf.DELAYED_REFUND, "int64", role="stream",
          description="net_conversion stream: 1 where a refund after moment 2 flips the label"),
        s(sf.AVAILABLE_AT, "int64", role="time",
          description="epoch seconds from which the trainer may see the sample"),
    ]


def stream_values(s: StreamSample) -> dict:
    """A stream sample's field values by their shared names."""
    return {sf.LABEL: s.label, sf.ELAPSED: s.elapsed, sf.IN_WINDOW: s.in_window,
            sf.IS_DUPLICATE: s.is_duplicate, sf.DELAYED_POSITIVE: s.delayed_positive,
            sf.DELAYED_REFUND: s.delayed_refund, sf.AVAILABLE_AT: s.available_at}


class ParsedSample(NamedTuple):
    """A sample's Example and the event times a stream needs (None: not known)."""

    example: example_pb2.Example
    click_ts: Optional[int]
    pay_ts: Optional[int]
    refund_ts: Optional[int]
    observe_at: int


def parse_sample(serialized: bytes) -> ParsedSample:
    """Raises ValueError naming the sample and the field when an event time is missing."""
    example = example_pb2.Example.FromString(serialized)
    fmap = example.features.feature
    source = repr(list(fmap["impression_id"].bytes_list.value)) if "impression_id" in fmap \
        else "without impression_id"
    times = [_event_time(fmap, name, source) for name in EVENT_TS + ("observe_at",)]
    return ParsedSample(example, *times)


def _event_time(fmap, name: str, source: str) -> Optional[int]:
    if name not in fmap or len(fmap[name].int64_list.value) != 1:
        raise ValueError(f"sample {source}: int64 feature {name!r} is missing or not a scalar; "
                         "stream inputs must come from the sample builder")
    value = fmap[name].int64_list.value[0]
    return None if value == UNKNOWN_TS else value


class _StreamDoFn(beam.DoFn):
    """Emits a sample's stream samples as copies of its Example, counted per kind."""

    def __init__(self, config: StreamConfig):
        self._config = config
        self._total = Metrics.counter(NAMESPACE, f"{COUNTER_PREFIX}samples")
        self._origins = Metrics.counter(NAMESPACE, f"{COUNTER_PREFIX}origins")

    def setup(self):
        self._encode = example_lib.make_features_encoder(stream_specs())
        self._kinds: dict = {}

    def _emit(self, example: example_pb2.Example, samples: list[StreamSample]):
        if not samples:
            return
        self._origins.inc()
        base = example.features.SerializeToString()
        for s in samples:
            self._count(s.kind)
            yield example_lib.wrap_example(base + self._encode(stream_values(s)))
        self._total.inc(len(samples))

    def _count(self, kind: str) -> None:
        counter = self._kinds.get(kind)
        if counter is None:
            counter = self._kinds[kind] = Metrics.counter(
                NAMESPACE, f"{COUNTER_PREFIX}kind.{kind}")
        counter.inc()


class AddStreamFields(_StreamDoFn):
    """Serialized sample -> its stream samples, serialized (one impression at a time)."""

    def process(self, serialized: bytes):
        p = parse_sample(serialized)
        yield from self._emit(p.example, impression_stream(
            self._config, p.click_ts, p.pay_ts, p.refund_ts, p.observe_at))


class AddRepurchaseFields(_StreamDoFn):
    """((user_id, item_id), serialized samples with a pay) -> their repurchase samples."""

    def process(self, keyed):
        _, group = keyed
        parsed = [parse_sample(s) for s in group]
        observe_at = parsed[0].observe_at  # one sample set, one clock
        streams = repurchase_streams(self._config, [p.pay_ts for p in parsed], observe_at)
        for p, samples in zip(parsed, streams):
            yield from self._emit(p.example, samples)


def _key_paid_by_user_item(serialized: bytes):
    p = parse_sample(serialized)
    if p.pay_ts is not None:
        fmap = p.example.features.feature
        key = tuple(fmap[n].bytes_list.value[0].decode() for n in ("user_id", "item_id"))
        yield key, serialized


class DelayedFeedbackStream(beam.PTransform):
    """Serialized sample tf.Examples -> the ``config`` stream's serialized tf.Examples."""

    def __init__(self, config: StreamConfig):
        super().__init__()
        self._config = config

    def expand(self, samples):
        if self._config.target != "repurchase":
            return samples | "AddStreamFields" >> beam.ParDo(AddStreamFields(self._config))
        return (samples | "KeyPaidByUserItem" >> beam.FlatMap(_key_paid_by_user_item)
                | "GroupUserItem" >> beam.GroupByKey()
                | "AddRepurchaseFields" >> beam.ParDo(AddRepurchaseFields(self._config)))
