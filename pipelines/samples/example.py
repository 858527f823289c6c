"""The training sample: its feature schema and its ``tf.train.Example`` encoding.

The schema file (``schema.json`` beside the TFRecords) lists every feature with its name,
dtype, shape, role and, for hashed crosses, the bucket count, so that training reads the
samples without guessing. Sequences have a fixed length (L clicks, K impressions), most
recent first, padded with ``""`` (strings) and ``-1`` (ints); ``seq_length`` says how many
click entries are real.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Sequence

from tensorflow.core.example import example_pb2, feature_pb2

from pipelines.config import SampleConfig
from pipelines.samples.category_affinity import RELATED_CLICK_COUNT, RELATED_IMP_COUNT
from pipelines.samples.category_purchase import LABEL as CATEGORY_PURCHASE
from pipelines.samples.labels import EVENT_TS, LABELS, UNKNOWN_TS

PAD_STRING = ""
PAD_INT = -1
TRUTH_FLOATS = ("p_click", "p_pay", "p_refund")
TRUTH_STRINGS = ("user_tier",)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    name: str
    dtype: str  # "string" | "int64" | "float"
    shape: tuple = ()
    role: str = "feature"
    buckets: int | None = None
    description: str = ""

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return {k: v for k, v in d.items() if v is not None and v != ""}


def sample_schema(config: SampleConfig, with_truth: bool = False) -> list[FeatureSpec]:
    """Every feature of a sample, in a fixed order."""
    L, K = config.sequence.length, config.sequence.impression_length
    s = FeatureSpec
    specs = [
        s("impression_id", "string", role="id"),
        s("user_id", "string", role="id"),
        s("item_id", "string", role="id"),
        s("category_id", "string", role="id"),
        s("country", "string", role="domain"),
        s("scene", "string", role="domain"),
        s("domain", "string", role="domain", description="country|scene"),
        s("ts", "int64", role="time", description="impression time, epoch seconds"),
    ]
    specs += [s(c.name, "string" if c.kind == "categorical" else "float", role="extra",
                description=f"extra {c.kind} column; missing: '' / NaN")
              for c in config.extra_columns]
    specs += [
        s("seq_item_ids", "string", (L,), "sequence",
          description="last clicked items with click_ts < ts, most recent first, '' padded"),
        s("seq_category_ids", "string", (L,), "sequence"),
        s("seq_click_ts", "int64", (L,), "sequence", description="-1 padded"),
        s("seq_length", "int64", role="sequence"),
        s("last_click_item_id", "string", role="sequence"),
        s("last_click_category_id", "string", role="sequence"),
        s("cross_seq_item_x_item", "int64", (L,), "cross", config.crosses.item_buckets,
          "to_hash_bucket_fast(seq_item + '\\x1f' + item_id), -1 padded"),
        s("cross_seq_category_x_category", "int64", (L,), "cross",
          config.crosses.category_buckets,
          "to_hash_bucket_fast(seq_category + '\\x1f' + category_id), -1 padded"),
        s("seq_imp_category_ids", "string", (K,), "sequence",
          description="categories of the last impressions with an earlier ts, most recent "
                      "first, '' padded"),
        s("cross_imp_category_x_category", "int64", (K,), "cross",
          config.crosses.category_buckets,
          "to_hash_bucket_fast(seq_imp_category + '\\x1f' + category_id), -1 padded"),
        s("imp_count", "int64", role="history",
          description="the user's impressions with ts < this ts"),
        s("click_count", "int64", role="history",
          description="the user's clicks with click_ts < ts"),
        s("item_imp_count", "int64", role="history",
          description=f"the item's impressions over the {config.item_stats.window_days} "
                      "whole UTC days before the impression's day"),
        s("item_click_count", "int64", role="history",
          description=f"the item's clicks over the {config.item_stats.window_days} "
                      "whole UTC days before the impression's day"),
        s("item_imp_per_million", "float", role="history",
          description="(item_imp_count + 0.5) per million impressions of all items over "
                      "the same days (item_stats.impressions_per_million); NaN when those "
                      "days hold none"),
    ]
    affinity = config.category_affinity
    if affinity.enabled:
        specs += [
            s(RELATED_CLICK_COUNT, "int64", role="history",
              description=f"of the last {affinity.recent_clicks} clicks, those on another "
                          "category whose related set (co-exposure before the impression's "
                          "day) holds category_id"),
            s(RELATED_IMP_COUNT, "int64", role="history",
              description="the same over the last impressions (seq_imp_category_ids)"),
        ]
    specs += [s(name, "int64", role="label", description="as observed at observe_at")
              for name in LABELS]
    if config.category_purchase.enabled:
        specs.append(s(
            CATEGORY_PURCHASE, "int64", role="label",
            description=f"1 iff the user paid for an item of this category_id with ts < "
                        f"pay_ts <= ts + {config.category_purchase.window_days} days and "
                        "pay_ts < observe_at (the impression's own pay counts); windows still "
                        "open at observe_at are censored like the other labels"))
    specs += [s(name, "int64", role="event_time",
                description=f"known before observe_at, else {UNKNOWN_TS}") for name in EVENT_TS]
    specs.append(s("observe_at", "int64", role="time"))
    if with_truth:
        specs += [s(n, "float", role="truth", description="simulator truth, evaluation only")
                  for n in TRUTH_FLOATS]
        specs += [s(n, "string", role="truth") for n in TRUTH_STRINGS]
    return specs


def schema_json(specs: Sequence[FeatureSpec], config: SampleConfig, observe_at: int) -> str:
    return json.dumps({
        "format": "tf.train.Example in TFRecord files",
        "observe_at": observe_at,
        "sequence_length": config.sequence.length,
        "features": [f.to_json() for f in specs],
    }, indent=2)


_LIST_KIND = {"string": "bytes_list", "int64": "int64_list", "float": "float_list"}
# The features that depend only on the user's click sequence, not on the target: the sample
# builder encodes them once per distinct sequence (see make_features_encoder).
SEQUENCE_FEATURES = ("seq_item_ids", "seq_category_ids", "seq_click_ts", "seq_length",
                     "last_click_item_id", "last_click_category_id")


def make_features_encoder(specs: Sequence[FeatureSpec]) -> Callable[[Mapping[str, Any]], bytes]:
    """A function serializing the ``specs`` features of one sample to a ``tf.train.Features``.

    A serialized ``Features`` is the concatenation of its map entries, so the encodings of
    disjoint feature sets concatenate into the encoding of their union; :func:`wrap_example`
    turns it into a ``tf.train.Example``. The per-feature decisions are made once here, not
    per sample: this is the sample builder's hottest loop. String values must be ``str``.
    """
    plan = [(s.name, _LIST_KIND[s.dtype], bool(s.shape), s.dtype == "string") for s in specs]

    def encode_features(sample: Mapping[str, Any]) -> bytes:
        features = feature_pb2.Features()
        fmap = features.feature
        for name, kind, is_list, is_string in plan:
            value = sample[name]
            values = getattr(fmap[name], kind).value
            if is_string:
                if is_list:
                    values.extend([v.encode() for v in value])
                else:
                    values.append(value.encode())
            elif is_list:
                values.extend(value)
            else:
                values.append(value)
        return features.SerializeToString()

    return encode_features


def memoized(fn: Callable[[Any], Any], max_entries: int = 1 << 16) -> Callable[[Any], Any]:
    """``fn`` with its results kept by argument (hashable), forgetting all at ``max_entries``.

    For feature groups whose value combinations repeat across samples (labels, domain,
    extra columns): the sample builder encodes each distinct combination once. Clearing
    instead of LRU eviction keeps a hit to one dict lookup.
    """
    cache: dict = {}

    def call(key):
        out = cache.get(key)
        if out is None:
            if len(cache) >= max_entries:
                cache.clear()
            out = cache[key] = fn(key)
        return out

    return call


def make_group_encoder(specs: Sequence[FeatureSpec],
                       max_entries: int = 1 << 16) -> Callable[[tuple], bytes]:
    """Like :func:`make_features_encoder` for values given as a tuple in ``specs`` order,
    each distinct tuple encoded once (see :func:`memoized`)."""
    encode = make_features_encoder(specs)
    names = [s.name for s in specs]
    return memoized(lambda values: encode(dict(zip(names, values))), max_entries)


def wrap_example(features: bytes) -> bytes:
    """Serialized ``Features`` -> serialized ``Example`` (its only field, number 1)."""
    return b"\x0a" + _varint(len(features)) + features


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode(sample: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> bytes:
    """Serializes one sample (name -> value or list of values) to a ``tf.train.Example``."""
    return wrap_example(make_features_encoder(specs)(sample))


def decode(serialized: bytes) -> dict[str, list]:
    """Inverse of :func:`encode` for tests and tools: name -> list of python values."""
    example = example_pb2.Example.FromString(serialized)
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value)
        out[name] = [v.decode() for v in values] if kind == "bytes_list" else values
    return out
