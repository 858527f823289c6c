"""Which events of an impression a stream is built on: its *target*.

* ``conversion`` (CVR): click-level. The origin is the click, the delayed event its pay;
  an impression not clicked (as known at ``observe_at``) is not in a CVR stream, because CVR
  is defined on clicks (ESMM's CTCVR over impressions uses the ordinary samples).
* ``refund`` (refund given conversion): conversion-level, the same rules one step later --
  the origin is the pay (when it is an attributed conversion of the click), the delayed
  event its refund, the attribution window the refund window. This is the stream of the
  refund head of the cascade ``pNet = pCVR x (1 - pRefund | conversion)``; a converted
  click's net-conversion label is ``1 - label`` of its refund samples.
* ``net_conversion``: click-level, the label flips up at a delayed pay and down at a
  delayed refund (seed 004's three moments, :mod:`pipelines.streams.net_conversion`); for a
  direct net-CVR head.
* ``repurchase``: purchase-level, an optional task. The origin is a pay, the delayed event the
  same user's next pay of the same item, the attribution window the repurchase window W: a
  purchase is repurchased if the user buys the item again within W. Needs all pays of a
  (user, item), so its transform groups them (:func:`repurchase_streams`); two pays in the
  same second are one purchase, not a repurchase.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from pipelines.streams.methods import (DEFAULT_ATTRIBUTION_S, StreamSample, attributed_event,
                                       check_windows, method_of, stream_samples)
from pipelines.streams.net_conversion import NET_METHODS, net_conversion_samples

TARGETS = ("conversion", "refund", "net_conversion", "repurchase")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """A stream: the method, the target and its windows (seconds; None: the default).

    Raises ValueError naming the bad value on construction.
    """

    method: str
    target: str = "conversion"
    window_s: Optional[int] = None
    attribution_s: Optional[int] = None

    def __post_init__(self):
        spec = method_of(self.method)
        if self.target not in TARGETS:
            raise ValueError(f"stream target {self.target!r} is not one of {TARGETS}")
        if self.target == "net_conversion" and self.method not in NET_METHODS:
            raise ValueError(f"stream method {self.method!r} has no net_conversion stream; "
                             f"use one of {NET_METHODS}")
        if self.window_s is None:
            object.__setattr__(self, "window_s", spec.default_window_s)
        if self.attribution_s is None:
            object.__setattr__(self, "attribution_s", DEFAULT_ATTRIBUTION_S)
        check_windows(spec, self.window_s, self.attribution_s)

    @property
    def name(self) -> str:
        """The output directory's name: ``stream_<method>`` (``_<target>`` unless CVR)."""
        suffix = "" if self.target == "conversion" else f"_{self.target}"
        return f"stream_{self.method}{suffix}"


def impression_stream(config: StreamConfig, click_ts: Optional[int], pay_ts: Optional[int],
                      refund_ts: Optional[int], observe_at: int) -> list[StreamSample]:
    """The stream samples of one impression (events as known at ``observe_at``)."""
    if config.target == "repurchase":
        raise ValueError("the repurchase stream needs all pays of a user and item: use "
                         "repurchase_streams")
    if click_ts is None or click_ts >= observe_at:
        return []
    args = (config.method, config.window_s, config.attribution_s, observe_at)
    if config.target == "conversion":
        return stream_samples(click_ts, pay_ts, *args)
    if config.target == "net_conversion":
        return net_conversion_samples(click_ts, pay_ts, refund_ts, *args)
    pay = attributed_event(click_ts, pay_ts, config.attribution_s, observe_at)
    return [] if pay is None else stream_samples(pay, refund_ts, *args)


def repurchase_streams(config: StreamConfig, pays: list[Optional[int]],
                       observe_at: int) -> list[list[StreamSample]]:
    """The repurchase samples of each of one user's impressions of one item, in input order.

    Args:
      pays: each impression's pay time (None: no pay), as known at ``observe_at``.
    """
    known = {p for p in pays if p is not None and p < observe_at}
    ordered = sorted(known)
    next_pay = dict(zip(ordered, ordered[1:]))
    args = (config.method, config.window_s, config.attribution_s, observe_at)
    return [stream_samples(p, next_pay.get(p), *args) if p in known else [] for p in pays]
