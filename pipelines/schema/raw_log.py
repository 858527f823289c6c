"""The raw impression-log schema and the validation of one row.

One row per impression. Timestamps are int64 epoch seconds; an event that never happened is
empty/null. ``country`` and ``scene`` are optional (default ``"default"``); the domain of an
impression is ``country x scene``. Extra columns are allowed and typed by the pipeline config.

A row that fails validation raises :class:`InvalidRow` with the field, the value and the
reason, so a pipeline can route it to a dead-letter output without losing it.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple, Optional, Sequence

ID_FIELDS = ("impression_id", "user_id", "item_id", "category_id")
DOMAIN_FIELDS = ("country", "scene")
TS_FIELD = "ts"
EVENT_TS_FIELDS = ("click_ts", "pay_ts", "refund_ts")
COLUMNS = ID_FIELDS + DOMAIN_FIELDS + (TS_FIELD,) + EVENT_TS_FIELDS
DEFAULT_DOMAIN_VALUE = "default"
DOMAIN_SEPARATOR = "|"

# Timestamps outside [2000-01-01, 2100-01-01) are almost surely milliseconds or garbage.
MIN_TS = 946_684_800
MAX_TS = 4_102_444_800


class InvalidRow(ValueError):
    """A raw row that cannot become a sample. ``reason`` names the field and the value."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


class Impression(NamedTuple):
    """One validated impression with its (possibly missing) downstream events.

    A plain tuple underneath, so Beam encodes it with its fast primitive coder.
    """

    impression_id: str
    user_id: str
    item_id: str
    category_id: str
    country: str
    scene: str
    ts: int
    click_ts: Optional[int]
    pay_ts: Optional[int]
    refund_ts: Optional[int]
    extras: tuple = ()  # ((name, value), ...) for the config's extra columns, in config order

    @property
    def domain(self) -> str:
        return domain_of(self.country, self.scene)


def domain_of(country: str, scene: str) -> str:
    return f"{country}{DOMAIN_SEPARATOR}{scene}"


def _is_missing(value: Any) -> bool:
    if value.__class__ is str:  # the common case (CSV), checked first: it runs 12x per row
        return not value or value.isspace()
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _parse_ts(field: str, value: Any, required: bool) -> Optional[int]:
    if value.__class__ is str and value.isdigit() and value.isascii():  # CSV's common cases
        ts = int(value)
    elif value == "" and not required:
        return None
    else:
        ts = _parse_any_ts(field, value, required)
        if ts is None:
            return None
    if not MIN_TS <= ts < MAX_TS:
        raise InvalidRow(
            field, f"field {field!r}: {ts} is outside [{MIN_TS}, {MAX_TS}) epoch seconds "
            "(milliseconds by mistake?)")
    return ts


def _parse_any_ts(field: str, value: Any, required: bool) -> Optional[int]:
    if _is_missing(value):
        if required:
            raise InvalidRow(field, f"missing required field {field!r}")
        return None
    try:
        if isinstance(value, str):
            value = value.strip()
            ts = int(value) if value.lstrip("-").isdigit() else float(value)
        else:
            ts = value
        if isinstance(ts, float):
            if not ts.is_integer():
                raise ValueError
            ts = int(ts)
        ts = int(ts)
    except (TypeError, ValueError, OverflowError):
        raise InvalidRow(field, f"field {field!r}: {value!r} is not an integer epoch-seconds timestamp")
    return ts


def _parse_id(field: str, value: Any) -> str:
    if value.__class__ is str and value and not value[0].isspace() and not value[-1].isspace():
        return value
    if _is_missing(value):
        raise InvalidRow(field, f"missing required field {field!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _parse_extra(name: str, kind: str, value: Any):
    if kind == "categorical":
        return "" if _is_missing(value) else str(value).strip()
    if _is_missing(value):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRow(name, f"numeric field {name!r}: {value!r} is not a number")
    if math.isinf(number):
        raise InvalidRow(name, f"numeric field {name!r}: {value!r} is not finite")
    return number


def parse_row(row: Mapping[str, Any],
              extra_columns: Sequence[tuple[str, str]] = ()) -> Impression:
    """Validates one raw row (a mapping column -> value, strings or native types).

    Args:
      row: the row as read from CSV (all strings), JSON Lines or Parquet.
      extra_columns: ``(name, "categorical" | "numeric")`` pairs declared by the config;
        a declared column absent from the row is missing (empty / NaN), not an error.

    Raises:
      InvalidRow: a required field is missing, a timestamp is malformed or out of range,
        or the event order is impossible (click before the impression, pay without or
        before the click, refund without or before the pay).
    """
    ids = [_parse_id(f, row.get(f)) for f in ID_FIELDS]
    country, scene = (
        DEFAULT_DOMAIN_VALUE if _is_missing(row.get(f)) else str(row.get(f)).strip()
        for f in DOMAIN_FIELDS)
    ts = _parse_ts(TS_FIELD, row.get(TS_FIELD), required=True)
    click_ts, pay_ts, refund_ts = (
        _parse_ts(f, row.get(f), required=False) for f in EVENT_TS_FIELDS)
    _check_event_order(ts, click_ts, pay_ts, refund_ts)
    extras = tuple((name, _parse_extra(name, kind, row.get(name)))
                   for name, kind in extra_columns)
    return Impression(*ids, country, scene, ts, click_ts, pay_ts, refund_ts, extras)


def _check_event_order(ts: int, click_ts, pay_ts, refund_ts) -> None:
    chain = (("ts", ts), ("click_ts", click_ts), ("pay_ts", pay_ts), ("refund_ts", refund_ts))
    for (prev_name, prev), (name, value) in zip(chain, chain[1:]):
        if value is None:
            continue
        if prev is None:
            raise InvalidRow(name, f"field {name!r} is {value} but {prev_name!r} is empty")
        if value < prev:
            raise InvalidRow(name, f"field {name!r} ({value}) is before {prev_name!r} ({prev})")
