r"""The streaming protocol of the delayed-feedback methods (issue 6): pre-train on the first
days, then train through the stream in time order, evaluating each next period against the
true labels. Every method runs the same protocol, so their figures compare.

Timeline (``P`` the period, a day by default; ``t_k = t_0 + k P``)::

    start ........ t_0 ......... t_1 ......... t_2 ... t_K ......... t_{K+1}
    | pre-training |   stream    |   stream    |       |             |
                   |  train@t_1  |  eval k=1   |       |  eval k=K   |
                                 |  train@t_2  | eval k=2

1. Pre-training, at ``t_0``: the clicks before ``t_0`` with the labels *observed at t_0*, as
   a production system retraining on its logs would see them (a conversion counts if it
   happened before ``t_0`` and within the attribution window ``W``; so do its in-window flag,
   its refund and net label): each head's output bias starts at its label rate in these rows
   (``Protocol.prior_init``), then one shuffled pass of the model's ``pretrain`` loss
   (:mod:`ranking.models.delayed_feedback`) and one pass of each auxiliary kind on the rows
   matured by ``t_0``. The model right after this step, never updated again, is the
   *Pre-trained* baseline.
2. Stream, at each ``t_k`` (``k = 1..K``): the model trains, period after period and once,
   on what became known in ``[t_{k-1}, t_k)``: clicks whose attribution window closed then
   (``matured_clicks``: final conversion labels for the delay heads), conversions whose refund
   window closed then (``matured_conversions``), and the method's stream rows with
   ``available_at`` in the period (``stream``, and ``net_stream`` for a net head). Auxiliary
   kinds go first, so the stream losses use weights fitted on everything known by ``t_k``.
   Inside a period the rows are shuffled (``within_period``): the model is updated and
   served once per period, so every row of it is equally past, and time order inside it
   only adds an hour-of-day phase -- in the FNW/ES-DFM streams the positive share swings
   from ~0.07 in the busy hours to ~0.15 at night (conversions lag the click peak), and a
   model trained in time order ends each day on the busy hours and under-predicts (pooled
   PCOC 0.87-0.90 for FNC and ES-DFM, against 1.01 shuffled, on the benchmark's data).
3. Evaluation after the update at ``t_k``: the clicks of ``[t_k, t_{k+1})`` against their
   *true final* labels.

Never train on the future. Every training row carries the moment its content became known
(``available_at`` for stream rows; for pre-training rows the last event their labels count,
as they are censored at ``t_0``; ``click + W`` or ``pay + W`` for matured rows) and :func:`run_protocol`
raises :class:`LeakError` unless it is before the update time; the moments are recorded in
``StreamingResult.training_log``. The one exception is the Oracle's stream, which by
definition labels a click with its later outcome.

True labels. The samples come from one ``ranking-pipeline`` run with a late ``--observe-at``
(at least ``W`` after the last evaluated click, ``2W`` for net labels, checked): their event
times are then complete and the final labels follow from the stream builder's attribution
rule (:func:`labels_at` with ``as_of`` = infinity). The simulator's truth (``p_pay``) is a
probability without the attribution window, so it is not the label the streams estimate, and
real logs have none. The same run's streams, cut at each ``t_k`` by ``available_at``, are the
streams as built at ``t_k`` (``pipelines/streams``: a stream cut earlier is a prefix of the
later stream).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from ranking.data.input import list_files
from ranking.data.schema import SCHEMA_FILE, load_schema, parse_spec
from ranking.losses import stream_fields as sf
from ranking.metrics import auc, log_loss, pcoc, pr_auc
from ranking.models.delayed_feedback import (CVR, MATURED_CLICKS, MATURED_CONVERSIONS, NET,
                                             NET_LABEL, NET_STREAM, PRETRAIN, REFUND,
                                             REFUND_LABEL, STREAM)

__all__ = ["Protocol", "StreamingResult", "LeakError", "read_rows", "stream_settings",
           "labels_at", "run_protocol", "metrics", "ri_auc", "EVENT_TIMES"]

DAY = 86_400
EVENT_TIMES = ("click_ts", "pay_ts", "refund_ts")
STREAM_ROW_FIELDS = (sf.LABEL, sf.ELAPSED, sf.IN_WINDOW, sf.IS_DUPLICATE, sf.DELAYED_POSITIVE,
                     sf.DELAYED_REFUND, sf.AVAILABLE_AT)
KNOWN_AT = "_known_at"  # per training row: when its features and label were all known
_CHUNK = 4096


class LeakError(AssertionError):
    """A training row whose content was not known before the update that uses it."""


# --------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class Protocol:
    """The protocol's clock and settings (times in epoch seconds).

    Args:
      start_ts: the start of the data (the first pre-training day).
      pretrain_days: days of pre-training; ``t_0 = start_ts + pretrain_days * 86400``.
      eval_periods: ``K``, the number of evaluated periods.
      window_s: the waiting window ``w`` of the in-window labels (the streams' window).
      attribution_s: ``W``: a conversion counts within ``W`` of its click, a refund within
        ``W`` of its pay (the streams' attribution window).
      period_s: ``P``, the training and evaluation period.
      batch_size: rows per optimizer step.
      seed: the pre-training shuffle's seed.
      prior_init: start every head's output bias at its label's log-odds in the rows known
        at ``t_0`` (``DelayedFeedbackModel.prior_rates``); False keeps Keras' zero biases.
      within_period: the order of a period's rows: ``shuffled`` (default) or ``time``
        (``available_at``; module docstring).
    """

    start_ts: int
    pretrain_days: int
    eval_periods: int
    window_s: int
    attribution_s: int
    period_s: int = DAY
    batch_size: int = 256
    seed: int = 0
    prior_init: bool = True
    within_period: str = "shuffled"

    def __post_init__(self):
        for name in ("pretrain_days", "eval_periods", "attribution_s", "period_s",
                     "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Protocol.{name} must be an integer >= 1, got {value!r}")
        if self.within_period not in ("shuffled", "time"):
            raise ValueError("Protocol.within_period must be 'shuffled' or 'time', got "
                             f"{self.within_period!r}")
        if isinstance(self.window_s, bool) or not isinstance(self.window_s, int) or not (
                0 <= self.window_s < self.attribution_s):
            raise ValueError(f"Protocol.window_s must be an integer in [0, attribution_s = "
                             f"{self.attribution_s}), got {self.window_s!r}")

    @property
    def t0(self) -> int:
        return self.start_ts + self.pretrain_days * DAY

    def boundary(self, k: int) -> int:
        """``t_k``."""
        return self.t0 + k * self.period_s

    @property
    def end(self) -> int:
        """``t_{K+1}``: the end of the last evaluated period."""
        return self.boundary(self.eval_periods + 1)


# ------------------------------------------------------------------------------ reading
def stream_settings(directory: str) -> dict:
    """The ``stream`` entry of a stream directory's ``schema.json`` (method, target,
    window_s, attribution_s); ValueError when the directory is not a stream."""
    with tf.io.gfile.GFile(os.path.join(directory, SCHEMA_FILE)) as f:
        entry = json.load(f).get("stream")
    if not entry:
        raise ValueError(f"{directory}: schema.json has no 'stream' entry; not a stream "
                         "directory (ranking-pipeline --stream)")
    return entry


def read_rows(directory: str, names: Sequence[str], clicked_only: bool = False) -> dict:
    """The ``names`` features of a sample (or stream) directory as numpy arrays, file order.

    ``clicked_only`` keeps the rows with a known click (``click_ts != -1``). Raises the
    schema's error naming a feature the directory lacks.
    """
    schema = load_schema(directory)
    names = list(dict.fromkeys(list(names) + (["click_ts"] if clicked_only else [])))
    spec = parse_spec(schema, names)
    parts: dict = {n: [] for n in names}
    for chunk in tf.data.TFRecordDataset(list_files(directory)).batch(_CHUNK):
        parsed = tf.io.parse_example(chunk, spec)
        keep = parsed["click_ts"].numpy() != -1 if clicked_only else None
        for n in names:
            value = parsed[n].numpy()
            parts[n].append(value if keep is None else value[keep])
    return {n: np.concatenate(v) if v else np.zeros((0,)) for n, v in parts.items()}


def _take(rows: Mapping, index) -> dict:
    return {k: v[index] for k, v in rows.items()}


def _size(rows: Mapping) -> int:
    return len(next(iter(rows.values())))


# ------------------------------------------------------------------------------- labels
def labels_at(rows: Mapping, as_of: float, window_s: int, attribution_s: int) -> dict:
    """Labels of clicks as known at ``as_of`` (events strictly before it), int64 arrays.

    With ``c, p, r`` the click, pay and refund times (``-1``: none) and ``W`` the attribution
    window, the stream builder's rule (``pipelines.streams.methods.attributed_event``):

    * ``label`` (converted): ``c <= p < c + W`` and ``p < as_of``;
    * ``in_window``: converted with ``p < c + w``;
    * ``refund_label``: converted, ``p <= r < p + W`` and ``r < as_of``;
    * ``net_label``: converted and not refunded;
    * ``delayed_refund``: refunded with ``r >= c + w`` (a refund after the waiting window).

    ``as_of = math.inf`` gives the final labels, provided the event times are complete.
    """
    c, p, r = (np.asarray(rows[n], np.int64) for n in EVENT_TIMES)
    if np.any(c < 0):
        raise ValueError(f"labels_at: rows without a click (click_ts {c[c < 0][:5].tolist()})")
    conv = (p >= c) & (p < c + attribution_s) & (p < as_of)
    refund = conv & (r >= p) & (r < p + attribution_s) & (r < as_of)
    return {sf.LABEL: conv.astype(np.int64),
            sf.IN_WINDOW: (conv & (p < c + window_s)).astype(np.int64),
            REFUND_LABEL: refund.astype(np.int64),
            NET_LABEL: (conv & ~refund).astype(np.int64),
            sf.DELAYED_REFUND: (refund & (r >= c + window_s)).astype(np.int64)}


# --------------------------------------------------------------------------------- rows
def _pretrain_rows(clicks: Mapping, p: Protocol) -> dict:
    keep = np.asarray(clicks["click_ts"]) < p.t0
    rows = _take(clicks, keep)
    labels = labels_at(rows, p.t0, p.window_s, p.attribution_s)
    # Known when the last event its labels count had happened.
    c, pay, refund = (np.asarray(rows[n], np.int64) for n in EVENT_TIMES)
    known_at = np.maximum.reduce([c, np.where(labels[sf.LABEL] == 1, pay, c),
                                  np.where(labels[REFUND_LABEL] == 1, refund, c)])
    return {**rows, **labels, KNOWN_AT: known_at}


def _matured_rows(clicks: Mapping, kind: str, start: float, end: int, p: Protocol) -> dict:
    """Clicks (``matured_clicks``) or their conversions (``matured_conversions``) whose
    window closed in ``[start, end)``, labelled as known at ``end`` (final for them)."""
    c = np.asarray(clicks["click_ts"], np.int64)
    if kind == MATURED_CLICKS:
        known_at = c + p.attribution_s
        keep = (known_at >= start) & (known_at < end)
    else:
        converted = labels_at(clicks, end, p.window_s, p.attribution_s)[sf.LABEL] == 1
        known_at = np.asarray(clicks["pay_ts"], np.int64) + p.attribution_s
        keep = converted & (known_at >= start) & (known_at < end)
    rows = _take(clicks, keep)
    return {**rows, **labels_at(rows, end, p.window_s, p.attribution_s),
            KNOWN_AT: known_at[keep]}


def _stream_rows(stream: Mapping, start: float, end: int) -> dict:
    a = np.asarray(stream[sf.AVAILABLE_AT], np.int64)
    keep = (a >= start) & (a < end)
    rows = _take(stream, keep)
    return {**rows, KNOWN_AT: a[keep]}


def _check_known_before(rows: Mapping, train_at: int, kind: str) -> int:
    """Raises LeakError if a row was not known strictly before ``train_at``; returns the
    latest moment a row became known (``-1`` for none)."""
    known = np.asarray(rows[KNOWN_AT], np.int64)
    if known.size and known.max() >= train_at:
        raise LeakError(f"{kind}: {int(np.sum(known >= train_at))} row(s) known at or after "
                        f"the update time {train_at} (latest {int(known.max())})")
    return int(known.max()) if known.size else -1


def _batches(rows: Mapping, order: np.ndarray, names: Sequence[str],
             batch_size: int) -> Iterator[dict]:
    for i in range(0, len(order), batch_size):
        index = order[i:i + batch_size]
        yield {n: rows[n][index] for n in names}


# ------------------------------------------------------------------------------ protocol
@dataclasses.dataclass
class StreamingResult:
    """Per evaluated click (all periods concatenated): its period ``k``, its true labels
    (``label``, ``refund_label``, ``net_label``), the streamed model's predictions and the
    Pre-trained model's (``pretrained_<name>``); ``training_log``: one entry per trained
    batch kind and update, ``{"train_at", "kind", "rows", "latest_known_at"}``."""

    eval: dict
    training_log: list


# The label and stream fields a batch may carry (the rest of a row is features or ids).
_FIELDS = tuple(dict.fromkeys(STREAM_ROW_FIELDS + (sf.LABEL, sf.IN_WINDOW, REFUND_LABEL,
                                                   NET_LABEL, sf.DELAYED_REFUND)))


def _train_kind(model, kind: str, rows: Mapping, order: np.ndarray, train_at: int,
                p: Protocol, log: list) -> None:
    latest = _check_known_before(rows, train_at, kind)
    log.append({"train_at": train_at, "kind": kind, "rows": int(len(order)),
                "latest_known_at": latest})
    names = list(model.feature_names) + [n for n in _FIELDS if n in rows]
    for batch in _batches(rows, order, names, p.batch_size):
        model.train_batch(kind, batch)


def _period_order(rows: Mapping, p: Protocol, rng: np.random.Generator) -> np.ndarray:
    if p.within_period == "time":
        return np.argsort(np.asarray(rows[KNOWN_AT]), kind="stable")
    return rng.permutation(_size(rows))


def _predictor(model, outputs: Sequence[str]) -> Callable[[Mapping], dict]:
    def fn(features):
        return model(features, training=False)

    if not getattr(model, "run_eagerly", False):
        fn = tf.function(fn, reduce_retracing=True)
    return lambda rows: _predict(fn, model.feature_names, rows, outputs)


def _predict(fn, names, rows: Mapping, outputs: Sequence[str]) -> dict:
    parts: dict = {o: [] for o in outputs}
    for batch in _batches(rows, np.arange(_size(rows)), names, _CHUNK):
        out = fn(batch)
        for o in outputs:
            parts[o].append(out[o].numpy())
    return {o: np.concatenate(v) if v else np.zeros((0,), np.float32)
            for o, v in parts.items()}


def _check_complete(observe_at: Optional[int], p: Protocol, horizon_windows: int) -> None:
    needed = p.end + horizon_windows * p.attribution_s
    if observe_at is None or observe_at < needed:
        raise ValueError(f"observe_at {observe_at!r} of the samples is too early for true "
                         f"labels: the last evaluated click (before {p.end}) needs events up "
                         f"to {needed} (end + {horizon_windows} x attribution window); rerun "
                         "ranking-pipeline with a later --observe-at")


def run_protocol(make_model: Callable[[], object], protocol: Protocol, clicks: Mapping,
                 streams: Mapping[str, Mapping], observe_at: Optional[int]) -> StreamingResult:
    """Runs the protocol (module docstring) for one model.

    Args:
      make_model: returns a fresh, compiled
        :class:`~ranking.models.delayed_feedback.DelayedFeedbackModel`.
      protocol: the clock.
      clicks: :func:`read_rows` of the clicked samples with the model's features and
        ``click_ts``, ``pay_ts``, ``refund_ts``.
      streams: ``{"stream": rows, "net_stream": rows}``, the stream rows (features and
        :data:`STREAM_ROW_FIELDS`) of the kinds the model trains on.
      observe_at: the samples' ``observe_at`` (must make the evaluated labels final).

    Returns:
      :class:`StreamingResult`.
    """
    p = protocol
    model = make_model()
    kinds = model.batch_kinds
    missing = [k for k in (STREAM, NET_STREAM) if k in kinds and k not in streams]
    if missing:
        raise ValueError(f"method {model.method!r} (net {model.net!r}) needs stream rows for "
                         f"{missing}; got {sorted(streams)}")
    outputs = [o for o in (CVR, REFUND, NET) if o in _output_names(model)]
    _check_complete(observe_at, p, 2 if NET in outputs or REFUND in outputs else 1)
    log: list = []

    pre = _pretrain_rows(clicks, p)
    matured = {kind: _matured_rows(clicks, kind, -math.inf, p.t0, p) for kind in kinds
               if kind in (MATURED_CLICKS, MATURED_CONVERSIONS)}
    if p.prior_init:
        model({n: pre[n][:1] for n in model.feature_names})  # creates the heads' weights
        model.set_output_biases(model.prior_rates({PRETRAIN: pre, **matured}))
    rng = np.random.default_rng(p.seed)
    _train_kind(model, PRETRAIN, pre, rng.permutation(_size(pre)), p.t0, p, log)
    for kind, rows in matured.items():
        _train_kind(model, kind, rows, _period_order(rows, p, rng), p.t0, p, log)

    predict = _predictor(model, outputs)
    evaluated = _eval_sets(clicks, p)
    pretrained = [predict(rows) for rows in evaluated]
    streamed = []
    for k in range(1, p.eval_periods + 1):
        start, end = p.boundary(k - 1), p.boundary(k)
        for kind in kinds:
            if kind in (MATURED_CLICKS, MATURED_CONVERSIONS):
                rows = _matured_rows(clicks, kind, start, end, p)
            else:
                rows = _stream_rows(streams[kind], start, end)
            _train_kind(model, kind, rows, _period_order(rows, p, rng), end, p, log)
        streamed.append(predict(evaluated[k - 1]))
    return StreamingResult(_collect(evaluated, streamed, pretrained, outputs), log)


def _output_names(model) -> set:
    names = {CVR}
    if model.net is not None:
        names.add(NET)
    if model.net == "cascade":
        names.add(REFUND)
    return names


def _eval_sets(clicks: Mapping, p: Protocol) -> list:
    """The clicks of each evaluated period ``[t_k, t_{k+1})`` with their final labels."""
    c = np.asarray(clicks["click_ts"], np.int64)
    sets = []
    for k in range(1, p.eval_periods + 1):
        rows = _take(clicks, (c >= p.boundary(k)) & (c < p.boundary(k + 1)))
        rows.update(labels_at(rows, math.inf, p.window_s, p.attribution_s))
        rows["period"] = np.full(_size(rows), k, np.int64)
        sets.append(rows)
    return sets


def _collect(evaluated, streamed, pretrained, outputs) -> dict:
    keys = ("period", sf.LABEL, REFUND_LABEL, NET_LABEL)
    out = {k: np.concatenate([e[k] for e in evaluated]) for k in keys}
    for o in outputs:
        out[o] = np.concatenate([s[o] for s in streamed])
        out[f"pretrained_{o}"] = np.concatenate([s[o] for s in pretrained])
    return out


# ------------------------------------------------------------------------------- metrics
def metrics(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """AUC, PR-AUC, NLL (mean log loss) and PCOC of predictions against 0/1 labels."""
    predictions = np.clip(np.asarray(predictions, np.float64), 0.0, 1.0)
    return {"auc": auc(labels, predictions), "pr_auc": pr_auc(labels, predictions),
            "nll": log_loss(labels, predictions), "pcoc": pcoc(labels, predictions)}


def ri_auc(value: float, base: float, oracle: float) -> float:
    """``(AUC - AUC_base) / (AUC_oracle - AUC_base)``: 0 at the base, 1 at the Oracle."""
    if oracle == base:
        raise ValueError(f"ri_auc: the oracle AUC equals the base AUC ({base!r})")
    return (value - base) / (oracle - base)
