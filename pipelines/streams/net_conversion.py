"""The click-level net-conversion stream: a click is a net conversion if it converts and the
conversion is not refunded, so its observed label can flip twice -- up when a delayed
conversion arrives, down when a delayed refund arrives.

Seed 004 observes each click at three moments (DEFER's re-ingestion applied to refunds):

==========  ===================================  =====================================
moment      observed positives                   observed negatives
==========  ===================================  =====================================
1 (window)  true positives + false positives     true negatives + false negatives
2           + false negatives (delayed pays)     true negatives
3 (final)   true positives + false negatives     true negatives + false positives
==========  ===================================  =====================================

Rules for click ``o`` with attributed pay ``p`` (``o <= p < o + A``) and attributed refund
``r`` (``p <= r < p + A``; the one attribution window ``A`` serves both), both known only
before ``T = observe_at``; ``a1, a2, a3`` are the moments' ``available_at``:

* moment 1, ``a1 = o + w``: ``y1 = [p < a1] and not [r < a1]``;
* moment 2, ``a2 = max(p, a1)`` if ``p`` else ``o + A`` (the pay, or the closed attribution
  window): ``y2 = [p] and not [r < a2]``; ``delayed_positive = 1`` when ``p >= a1``;
* moment 3, ``a3 = max(r, a2)`` if ``r``, else ``max(p + A, a2)`` if ``p`` (the refund window
  closed), else ``a2``: ``y3 = [p] and not [r]``, the final label; ``delayed_refund = 1``
  when ``r >= a1``, a refund after the window (then ``r >= a2`` too, since ``r >= p``): the
  copy on which a positive turns negative.

So every click is ingested three times, as the seed's thirds assume. The copies' labels per
kind of click are never 000, in-window pay never refunded 111, refunded in the window 000,
in-window pay refunded later 110, later pay never refunded 011, later pay refunded 010: the
table from which :mod:`ranking.losses.net_conversion` derives ``q(y=1|x) = p(y=1|x) +
2/3 P_dr(x) - 1/3 P_dp(x)`` with ``P_dr`` = P(refund after the window) (``delayed_refund``)
and ``P_dp`` = P(conversion after the window) (``delayed_positive``).

Other methods on this target: ``vanilla`` (moment 1 only) and ``oracle`` (the final label
at click time; it uses the future, see :mod:`pipelines.streams.methods`).
"""
from __future__ import annotations

from typing import Optional

from pipelines.streams.methods import (DELAYED_POSITIVE, DELAYED_REFUND, NEGATIVE,
                                       NEGATIVE_DUPLICATE, POSITIVE, POSITIVE_DUPLICATE,
                                       REAL_NEGATIVE, StreamSample, attributed_event,
                                       check_windows, method_of)

NET_METHODS = ("vanilla", "defer", "oracle")


def net_conversion_samples(click: int, pay: Optional[int], refund: Optional[int], method: str,
                           window_s: int, attribution_s: int,
                           observe_at: int) -> list[StreamSample]:
    """The net-conversion samples ``method`` sees for one click, in ``available_at`` order."""
    if method not in NET_METHODS:
        raise ValueError(f"stream method {method!r} has no net_conversion stream; use one of "
                         f"{NET_METHODS}")
    spec = method_of(method)
    check_windows(spec, window_s, attribution_s)
    p = attributed_event(click, pay, attribution_s, observe_at)
    r = None if p is None else attributed_event(p, refund, attribution_s, observe_at)
    if spec.uses_future:
        label = int(p is not None and r is None)
        return [s for s in [StreamSample(click, label, 0, 0, 0, 0, POSITIVE if label
                                         else NEGATIVE)] if s.available_at < observe_at]
    moments = _three_moments(click, p, r, window_s, attribution_s)
    if method == "vanilla":
        moments = moments[:1]
    return [s for s in moments if s.available_at < observe_at]


def _three_moments(o: int, p: Optional[int], r: Optional[int], w: int,
                   attribution_s: int) -> list[StreamSample]:
    paid = p is not None
    refunded_before = lambda t: r is not None and r < t  # noqa: E731
    in_window = int(paid and p < o + w)
    a1 = o + w
    a2 = max(p, a1) if paid else o + attribution_s
    if r is not None:
        a3 = max(r, a2)
    else:
        a3 = max(p + attribution_s, a2) if paid else a2
    y1 = int(bool(in_window) and not refunded_before(a1))
    y2 = int(paid and not refunded_before(a2))
    y3 = int(paid and r is None)
    delayed_pay = paid and p >= a1
    delayed_refund = r is not None and r >= a1

    def sample(at, label, delayed_positive, delayed_ref, kind, duplicate=1):
        return StreamSample(at, label, at - o, in_window, duplicate, delayed_positive, kind,
                            delayed_ref)

    if not paid:
        kind2 = REAL_NEGATIVE
    elif delayed_pay:
        kind2 = DELAYED_POSITIVE
    else:
        kind2 = POSITIVE_DUPLICATE if y2 else NEGATIVE_DUPLICATE
    if delayed_refund:
        kind3 = DELAYED_REFUND
    else:
        kind3 = POSITIVE_DUPLICATE if y3 else (REAL_NEGATIVE if not paid
                                               else NEGATIVE_DUPLICATE)
    return [sample(a1, y1, 0, 0, POSITIVE if y1 else NEGATIVE, duplicate=0),
            sample(a2, y2, int(delayed_pay), 0, kind2),
            sample(a3, y3, 0, int(delayed_refund), kind3)]
