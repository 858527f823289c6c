"""Labels as observed at a moment (``observe_at``), never later.

An event counts only if it happened strictly before ``observe_at``; a later event is not yet
known, so its label is 0 and its timestamp ``UNKNOWN_TS``. A conversion is a pay event;
net conversion is a conversion not refunded, both as observed.
"""
from __future__ import annotations

from typing import Optional

UNKNOWN_TS = -1
LABELS = ("click", "conversion", "refund", "net_conversion")
EVENT_TS = ("click_ts", "pay_ts", "refund_ts")


def known_at(event_ts: Optional[int], observe_at: int) -> bool:
    """Whether an event (None: it never happened) is known at ``observe_at``."""
    return event_ts is not None and event_ts < observe_at


def observed_labels(click_ts: Optional[int], pay_ts: Optional[int], refund_ts: Optional[int],
                    observe_at: int) -> dict[str, int]:
    """Labels and event timestamps known at ``observe_at``."""
    click, pay, refund = (known_at(t, observe_at) for t in (click_ts, pay_ts, refund_ts))
    return {
        "click": int(click), "conversion": int(pay), "refund": int(refund),
        "net_conversion": int(pay and not refund),
        "click_ts": click_ts if click else UNKNOWN_TS,
        "pay_ts": pay_ts if pay else UNKNOWN_TS,
        "refund_ts": refund_ts if refund else UNKNOWN_TS,
    }
