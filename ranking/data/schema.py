"""The sample schema (``schema.json`` beside the TFRecords) as typed specs.

The sample builder writes ``DIR/schema.json`` (see :mod:`pipelines.samples.example`): every
feature's name, dtype (``string`` | ``int64`` | ``float``), shape (``[]`` or ``[L]``), role
(``id``, ``domain``, ``time``, ``extra``, ``sequence``, ``cross`` with ``buckets``, ``label``,
``event_time``, ``truth``) and the ``observe_at`` moment the labels were observed at. This
module reads it (:func:`load_schema`), gives the ``tf.io.parse_example`` spec of the features
a model reads (:func:`parse_spec`) and checks an experiment config against it
(:func:`check_config`), naming the offending feature and config key.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable, Mapping, Optional

import tensorflow as tf

from ranking.utils.typed_config import ConfigError

__all__ = ["SchemaError", "FeatureSpec", "Schema", "load_schema", "parse_spec", "check_config",
           "SCHEMA_FILE", "PAD_STRING", "PAD_INT"]

SCHEMA_FILE = "schema.json"
PAD_STRING = ""
PAD_INT = -1
DTYPES = {"string": tf.string, "int64": tf.int64, "float": tf.float32}
# Roles whose features must be present in every Example: parsing fails loudly without them
# rather than training on a default.
REQUIRED_ROLES = ("label", "time")


class SchemaError(ConfigError):
    """A schema file that cannot be read, or a config that asks for what the schema lacks."""


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """One feature of the samples."""

    name: str
    dtype: str
    shape: tuple = ()
    role: str = "feature"
    buckets: Optional[int] = None
    description: str = ""

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise SchemaError(f"feature {self.name!r}: dtype {self.dtype!r} is not one of "
                              f"{sorted(DTYPES)}")
        if any(not isinstance(d, int) or d < 1 for d in self.shape) or len(self.shape) > 1:
            raise SchemaError(f"feature {self.name!r}: shape {list(self.shape)} must be [] or "
                              "[L] with L >= 1")

    @property
    def tf_dtype(self) -> tf.DType:
        return DTYPES[self.dtype]

    @property
    def pad_value(self) -> Any:
        """Value of a missing entry: ``""``, ``-1`` or NaN."""
        return {"string": PAD_STRING, "int64": PAD_INT, "float": float("nan")}[self.dtype]

    def parse_feature(self) -> tf.io.FixedLenFeature:
        """The ``FixedLenFeature`` of this feature; missing values get the pad (required roles
        have no default)."""
        if self.role in REQUIRED_ROLES:
            return tf.io.FixedLenFeature(self.shape, self.tf_dtype)
        default = [self.pad_value] * self.shape[0] if self.shape else self.pad_value
        return tf.io.FixedLenFeature(self.shape, self.tf_dtype, default_value=default)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        return {k: v for k, v in d.items() if v is not None and v != ""}


@dataclasses.dataclass(frozen=True)
class Schema:
    """All features of a sample set, in file order, with ``observe_at`` and the sequence length.

    ``schema["name"]`` gives a :class:`FeatureSpec`; ``"name" in schema`` tests presence.
    """

    features: tuple
    observe_at: Optional[int] = None
    sequence_length: Optional[int] = None

    def __post_init__(self):
        names = [f.name for f in self.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"schema: duplicate feature(s) {dupes}")
        object.__setattr__(self, "_by_name", {f.name: f for f in self.features})

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(f"feature {name!r} is not in the schema; known features: "
                              f"{self.names}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def by_role(self, role: str) -> list[FeatureSpec]:
        return [f for f in self.features if f.role == role]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Schema":
        """From the parsed ``schema.json`` mapping (or :meth:`to_json`'s output)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("features"), list):
            raise SchemaError("schema: expected a mapping with a 'features' list")
        specs = []
        known = {f.name for f in dataclasses.fields(FeatureSpec)}
        for i, f in enumerate(data["features"]):
            if not isinstance(f, Mapping) or "name" not in f or "dtype" not in f:
                raise SchemaError(f"schema: features[{i}] needs 'name' and 'dtype', got {f!r}")
            kwargs = {k: v for k, v in f.items() if k in known}
            kwargs["shape"] = tuple(kwargs.get("shape", ()))
            specs.append(FeatureSpec(**kwargs))
        return cls(tuple(specs), data.get("observe_at"), data.get("sequence_length"))

    def to_json(self) -> dict:
        out: dict[str, Any] = {"features": [f.to_json() for f in self.features]}
        if self.observe_at is not None:
            out["observe_at"] = self.observe_at
        if self.sequence_length is not None:
            out["sequence_length"] = self.sequence_length
        return out


def load_schema(path: str | os.PathLike) -> Schema:
    """Reads ``schema.json``; ``path`` is the file or the sample directory that holds it."""
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, SCHEMA_FILE)
    try:
        with tf.io.gfile.GFile(path) as f:
            data = json.load(f)
    except (OSError, tf.errors.NotFoundError) as e:
        raise SchemaError(f"{path}: cannot read the schema: {e}") from None
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path}: not JSON: {e}") from None
    try:
        return Schema.from_json(data)
    except (SchemaError, TypeError) as e:
        raise SchemaError(f"{path}: {e}") from None


def parse_spec(schema: Schema, wanted_names: Iterable[str]) -> dict[str, tf.io.FixedLenFeature]:
    """The ``tf.io.parse_example`` spec of ``wanted_names`` (shapes and pads from the schema).

    Raises:
      SchemaError: naming the first wanted feature the schema lacks.
    """
    return {name: schema[name].parse_feature() for name in dict.fromkeys(wanted_names)}


# --- config check --------------------------------------------------------------------------

_SCALAR_FEATURE_ROLES = ("id", "domain", "extra", "sequence", "history", "feature")


def _require(schema: Schema, key: str, name: str, *, dtypes: tuple, roles: tuple,
             shapes: str) -> FeatureSpec:
    if name not in schema:
        raise SchemaError(f"{key}: feature {name!r} is not in the schema; features with role "
                          f"{'/'.join(roles)} are "
                          f"{[f.name for f in schema.features if f.role in roles]}")
    spec = schema[name]
    if spec.dtype not in dtypes:
        raise SchemaError(f"{key}: feature {name!r} has dtype {spec.dtype!r} in the schema, "
                          f"expected {' or '.join(dtypes)}")
    if spec.role not in roles:
        raise SchemaError(f"{key}: feature {name!r} has role {spec.role!r} in the schema, "
                          f"expected {' or '.join(roles)}")
    ok = {"scalar": spec.shape == (), "vector": len(spec.shape) == 1,
          "any": True}[shapes]
    if not ok:
        want = {"scalar": "[]", "vector": "[L]"}[shapes]
        raise SchemaError(f"{key}: feature {name!r} has shape {list(spec.shape)} in the schema, "
                          f"expected {want}")
    return spec


def check_config(schema: Schema, config) -> None:
    """Checks that every feature and label an experiment config reads exists in the schema
    with a usable dtype, role and shape.

    Args:
      schema: the samples' :class:`Schema`.
      config: a :class:`ranking.config.ExperimentConfig`, or just its ``FeaturesConfig``.

    Raises:
      SchemaError: naming the config key and the feature.
    """
    features = getattr(config, "features", config)
    for i, f in enumerate(features.ids):
        _require(schema, f"features.ids[{i}]", f.name, dtypes=("string",),
                 roles=_SCALAR_FEATURE_ROLES, shapes="scalar")
    for i, f in enumerate(features.sequences):
        _require(schema, f"features.sequences[{i}]", f.name, dtypes=("string",),
                 roles=("sequence",), shapes="any")
    for i, f in enumerate(features.crosses):
        spec = _require(schema, f"features.crosses[{i}]", f.name, dtypes=("int64",),
                        roles=("cross",), shapes="vector")
        if not spec.buckets or spec.buckets < 1:
            raise SchemaError(f"features.crosses[{i}]: feature {f.name!r} has no bucket count "
                              "in the schema")
    for i, f in enumerate(features.numerics):
        _require(schema, f"features.numerics[{i}]", f.name, dtypes=("float", "int64"),
                 roles=_SCALAR_FEATURE_ROLES, shapes="scalar")
    for i, f in enumerate(getattr(features, "biases", ())):
        _require(schema, f"features.biases[{i}]", f.name, dtypes=("string",),
                 roles=_SCALAR_FEATURE_ROLES, shapes="scalar")
    for i, m in enumerate(getattr(features, "matches", ())):
        _require(schema, f"features.matches[{i}].sequence", m.sequence, dtypes=("string",),
                 roles=("sequence",), shapes="any")
        _require(schema, f"features.matches[{i}].target", m.target, dtypes=("string",),
                 roles=_SCALAR_FEATURE_ROLES, shapes="scalar")
    domain = getattr(config, "domain", None)
    if domain is not None:
        _require(schema, "domain.feature", domain.feature, dtypes=("string",),
                 roles=("domain", "id", "extra"), shapes="scalar")
    for i, t in enumerate(getattr(config, "tasks", ())):
        _require(schema, f"tasks[{i}].label", t.label, dtypes=("int64", "float"),
                 roles=("label",), shapes="scalar")
        if t.mask_label is not None:
            _require(schema, f"tasks[{i}].mask_label", t.mask_label, dtypes=("int64", "float"),
                     roles=("label",), shapes="scalar")
