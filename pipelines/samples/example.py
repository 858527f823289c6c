"""The training sample: its feature schema and its ``tf.train.Example`` encoding.

The schema file (``schema.json`` beside the TFRecords) lists every feature with its name,
dtype, shape, role and, for hashed crosses, the bucket count, so that training reads the
samples without guessing. Sequences have a fixed length L, most recent click first, padded
with ``""`` (strings) and ``-1`` (ints); ``seq_length`` says how many entries are real.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping, Sequence

from tensorflow.core.example import example_pb2

from pipelines.config import SampleConfig
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
    L = config.sequence.length
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
    ]
    specs += [s(name, "int64", role="label", description="as observed at observe_at")
              for name in LABELS]
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


def encode(sample: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> bytes:
    """Serializes one sample (a mapping name -> value or list of values) to a tf.Example."""
    example = example_pb2.Example()
    fmap = example.features.feature
    for spec in specs:
        value = sample[spec.name]
        values = value if spec.shape else (value,)
        if spec.dtype == "string":
            fmap[spec.name].bytes_list.value.extend(
                v if isinstance(v, bytes) else str(v).encode() for v in values)
        elif spec.dtype == "int64":
            fmap[spec.name].int64_list.value.extend(values)
        else:
            fmap[spec.name].float_list.value.extend(values)
    return example.SerializeToString()


def decode(serialized: bytes) -> dict[str, list]:
    """Inverse of :func:`encode` for tests and tools: name -> list of python values."""
    example = example_pb2.Example.FromString(serialized)
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value)
        out[name] = [v.decode() for v in values] if kind == "bytes_list" else values
    return out


def is_nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)
