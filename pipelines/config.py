"""Typed configuration loaded from YAML, and the sample builder's own config.

``from_mapping`` turns a nested mapping into nested dataclasses and fails on unknown keys or
values of the wrong type with a message that names the key path and the value.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration file or mapping that does not describe a valid config."""


def _check_type(path: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return from_mapping(tp, value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        items = [_check_type(f"{path}[{i}]", item_tp, v) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(path, inner, value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and (
            not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


def from_mapping(cls, mapping: Mapping[str, Any], path: str = ""):
    """Builds dataclass ``cls`` from ``mapping``; unknown keys and bad values raise ConfigError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(fields))
    if unknown:
        raise ConfigError(
            f"{path or cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _check_type(f"{path}.{name}" if path else name, hints[name], value)
              for name, value in mapping.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required key is missing
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def load_yaml(cls, path: str | os.PathLike):
    """Loads dataclass ``cls`` from a YAML file; an empty file gives the defaults."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: top level must be a mapping, got {data!r}")
    try:
        return from_mapping(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class ExtraColumn:
    """A raw-log column beyond the fixed schema, carried into the samples."""

    name: str
    kind: typing.Literal["categorical", "numeric"]


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """Point-in-time click sequences.

    Attributes:
      length: how many most recent clicks each sample keeps (L).
      bucket_seconds: the user's history is processed in time buckets of this size, so no
        worker ever holds more than one user-bucket of events; smaller buckets bound memory
        more tightly for very active users at the cost of more, smaller groups.
    """

    length: int = 20
    bucket_seconds: int = 86400

    def __post_init__(self):
        if self.length < 1:
            raise ConfigError(f"sequence.length must be >= 1, got {self.length!r}")
        if self.bucket_seconds < 1:
            raise ConfigError(
                f"sequence.bucket_seconds must be >= 1, got {self.bucket_seconds!r}")


@dataclasses.dataclass(frozen=True)
class CrossConfig:
    """Hash-bucket counts of the sequence x target crosses."""

    item_buckets: int = 100_000
    category_buckets: int = 10_000

    def __post_init__(self):
        for name in ("item_buckets", "category_buckets"):
            if getattr(self, name) < 1:
                raise ConfigError(f"crosses.{name} must be >= 1, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Everything the sample builder needs besides its input, output and runner."""

    sequence: SequenceConfig = dataclasses.field(default_factory=SequenceConfig)
    crosses: CrossConfig = dataclasses.field(default_factory=CrossConfig)
    extra_columns: list[ExtraColumn] = dataclasses.field(default_factory=list)
    input_format: typing.Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    num_shards: int = 0  # 0: let the runner choose

    def __post_init__(self):
        names = [c.name for c in self.extra_columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"extra_columns: duplicate name(s) {dupes}")
        from pipelines.schema.raw_log import COLUMNS
        clash = sorted(set(names) & set(COLUMNS))
        if clash:
            raise ConfigError(f"extra_columns: {clash} are fixed schema columns, not extras")

    @property
    def extra_pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple((c.name, c.kind) for c in self.extra_columns)
