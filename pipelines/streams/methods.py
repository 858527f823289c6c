"""The per-method rules of the delayed-feedback sample streams: which samples a training
method sees for one origin event, with which label, and from when.

A stream is built from two events: the *origin* ``o`` (a click for the conversion stream,
a pay for the refund stream) and the *delayed event* ``e`` that defines the positive label
(its conversion, its refund). Times are epoch seconds. Parameters:

* ``w`` -- the waiting window: how long a method waits after ``o`` before the first sample;
* ``A`` -- the attribution window: ``e`` counts only if ``o <= e < o + A`` (later it belongs
  to no click, as in the Criteo logs' 30-day attribution);
* ``T`` -- ``observe_at``, the stream's clock: an event at or after ``T`` is unknown (it never
  happened as far as the stream knows) and a sample is emitted only if ``available_at < T``.

"Known at time t" means strictly before ``t`` (as in :mod:`pipelines.samples.labels`), except
that a sample created *by* an event (a duplicate at conversion time) is available at that
event's time. Samples per origin, ``a`` being ``available_at``:

==========================  =================================================================
method                      samples (a: label, kind)
==========================  =================================================================
vanilla                     o+w: [e < o+w]. Observed labels after the window, never
                            corrected (the common production baseline; ES-DFM paper).
fnw, fnc                    o: 0 "negative"; if e: e: 1 "delayed_positive". Every click at
                            once as a negative, a positive duplicate at conversion (Ktena et
                            al., RecSys 2019). FNW and FNC share the stream; they differ in
                            the loss (weights) and the inference-time calibration.
es_dfm, defuse, bi_defuse   o+w: [e < o+w]; if e >= o+w: e: 1 "delayed_positive".
                            Elapsed-time window, then duplicates of delayed positives (Yang et
                            al., AAAI 2021). DEFUSE and Bi-DEFUSE (Chen et al., WWW 2022)
                            train on the same stream: DEFUSE tells its four sample types
                            apart with ``in_window`` (immediate positive), ``is_duplicate``
                            (delayed positive) and the observed negatives (real or fake,
                            inferred by its model); Bi-DEFUSE trains its in-window head on
                            the originals (``is_duplicate == 0``, label = in-window label)
                            and its out-window head with ``delayed_positive`` as the label.
defer                       o+w: [e < o+w]; if e: max(e, o+w): 1 "positive_duplicate" or
                            "delayed_positive"; if no e: o+A: 0 "real_negative". Every origin
                            is ingested twice, so the observed feature distribution equals
                            the true one (Gu et al., KDD 2021; the authors' code duplicates
                            in-window positives too). An in-window positive's duplicate waits
                            for the window like its original.
oracle                      o: [e]. The true label at click time: the upper bound that RI-AUC
                            uses. It *knowingly uses the future* (``uses_future``): its label
                            may come from an event after ``available_at`` -- never from one at
                            or after ``T`` -- so train it only as the oracle baseline, with
                            ``T`` >= the last origin + ``A`` for labels that are final.
==========================  =================================================================

Fields of each sample (names in :mod:`ranking.losses.stream_fields`): ``label``;
``elapsed = a - o``; ``in_window = [e < o+w]`` (known at every sample of a windowed method,
since none is available before ``o+w``; 0 without a window); ``is_duplicate``;
``delayed_positive`` (a positive duplicate whose event came at or after ``o+w``);
``delayed_refund`` (only in the net-conversion stream, :mod:`pipelines.streams.net_conversion`).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

HOUR = 3600
DAY = 86400


@dataclasses.dataclass(frozen=True)
class Method:
    """One stream method: its rules and its default waiting window."""

    name: str
    waits: bool                 # first sample after the waiting window (else at the origin)
    duplicates_positives: str   # "none" | "delayed" (event after the window) | "all"
    real_negatives: bool        # DEFER: a negative duplicate when the attribution window closes
    default_window_s: int       # 0 for methods without a window
    uses_future: bool = False   # oracle only: the label may come from after available_at


# Defaults from the papers' reference code: ES-DFM's elapsed time C = 0.25 h (its Vanilla
# baseline waits 1 h), used by the DEFUSE authors for Bi-DEFUSE and here for every windowed
# method so that their streams are comparable.
METHODS = {m.name: m for m in (
    Method("vanilla", True, "none", False, 1 * HOUR),
    Method("fnw", False, "delayed", False, 0),
    Method("fnc", False, "delayed", False, 0),
    Method("es_dfm", True, "delayed", False, HOUR // 4),
    Method("defer", True, "all", True, HOUR // 4),
    Method("defuse", True, "delayed", False, HOUR // 4),
    Method("bi_defuse", True, "delayed", False, HOUR // 4),
    Method("oracle", False, "none", False, 0, uses_future=True),
)}
# The Criteo conversion logs attribute conversions up to 30 days after the click (Chapelle,
# KDD 2014); the DEFER runs of the DEFUSE authors use the same 30 days.
DEFAULT_ATTRIBUTION_S = 30 * DAY

# Sample kinds, counted in the run summary.
NEGATIVE, POSITIVE = "negative", "positive"
DELAYED_POSITIVE, POSITIVE_DUPLICATE = "delayed_positive", "positive_duplicate"
REAL_NEGATIVE = "real_negative"
NEGATIVE_DUPLICATE, DELAYED_REFUND = "negative_duplicate", "delayed_refund"


class StreamSample(NamedTuple):
    """One sample of a stream (the fields added to the copied tf.Example, plus ``kind``)."""

    available_at: int
    label: int
    elapsed: int
    in_window: int
    is_duplicate: int
    delayed_positive: int
    kind: str
    delayed_refund: int = 0


def method_of(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"stream method {name!r} is not one of {sorted(METHODS)}") from None


def check_windows(method: Method, window_s: int, attribution_s: int) -> None:
    """Raises ValueError naming the bad window: negative, or a window where none applies."""
    if attribution_s <= 0:
        raise ValueError(f"attribution window {attribution_s!r} s must be > 0")
    if not method.waits and window_s != 0:
        raise ValueError(f"stream method {method.name!r} has no waiting window; got window "
                         f"{window_s!r} s (leave it unset)")
    if not 0 <= window_s < attribution_s:
        raise ValueError(f"waiting window {window_s!r} s must be >= 0 and shorter than the "
                         f"attribution window ({attribution_s!r} s)")


def attributed_event(origin: int, event: Optional[int], attribution_s: int,
                     observe_at: int) -> Optional[int]:
    """``event`` if it counts for ``origin`` as known at ``observe_at``, else None."""
    if event is None or event >= observe_at or not origin <= event < origin + attribution_s:
        return None
    return event


def stream_samples(origin: int, event: Optional[int], method: str, window_s: int,
                   attribution_s: int, observe_at: int) -> list[StreamSample]:
    """The samples ``method`` sees for one origin event, in ``available_at`` order.

    Args:
      origin: the origin event time (click time; pay time for the refund stream).
      event: the delayed event time (conversion; refund), or None if it never happened.
        An event at/after ``observe_at`` or outside the attribution window is ignored.
      method: a key of :data:`METHODS`.
      window_s: the waiting window in seconds (0 for fnw, fnc, oracle).
      attribution_s: the attribution window in seconds.
      observe_at: the stream's clock; only samples with ``available_at < observe_at``.
    """
    spec = method_of(method)
    check_windows(spec, window_s, attribution_s)
    e = attributed_event(origin, event, attribution_s, observe_at)
    samples = _method_samples(spec, origin, e, window_s, attribution_s)
    return [s for s in samples if s.available_at < observe_at]


def _method_samples(spec: Method, o: int, e: Optional[int], w: int,
                    attribution_s: int) -> list[StreamSample]:
    in_window = int(e is not None and e < o + w)
    first_at = o + w if spec.waits else o
    if spec.uses_future:
        first_label = int(e is not None)
    else:
        first_label = in_window if spec.waits else 0

    def sample(at: int, label: int, duplicate: int, delayed: int, kind: str) -> StreamSample:
        return StreamSample(at, label, at - o, in_window, duplicate, delayed, kind)

    out = [sample(first_at, first_label, 0, 0, POSITIVE if first_label else NEGATIVE)]
    if e is not None:
        delayed = e >= o + w
        if spec.duplicates_positives == "all" or (
                spec.duplicates_positives == "delayed" and delayed):
            kind = DELAYED_POSITIVE if delayed else POSITIVE_DUPLICATE
            out.append(sample(max(e, first_at), 1, 1, int(delayed), kind))
    elif spec.real_negatives:
        out.append(sample(o + attribution_s, 0, 1, 0, REAL_NEGATIVE))
    return out
