"""Typed configuration: nested dataclasses loaded from YAML mappings.

``from_mapping`` turns a nested mapping into nested dataclasses and fails on unknown keys or
values of the wrong type with a message that names the key path and the value. Every config of
the product (sample builder, experiments) is loaded through it.
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
