"""The generalized auxiliary label ``category_purchase`` (seed 002, Fliggy's generalized labels).

Purchases are rare (about 1 per 1000 clicks in the seed's scene) but purchases of *an item of
the same category* are about 30x more frequent; trained as an extra task beside CVR, the
label gives the shared layers a much denser signal of purchase intent.

Definition. For an impression of user ``u`` at ``ts`` whose item has category ``c``, with
labels observed at ``observe_at`` and a window of ``W`` seconds::

    category_purchase = 1  iff  u has a pay event p with
                                category(p) == c  and  ts < pay_ts(p) <= ts + W
                                and pay_ts(p) < observe_at

A pay event is the ``pay_ts`` of one of ``u``'s impressions and its category is that
impression's ``category_id``, so the impression's own conversion counts (its pay is of its
own category). Point in time: a pay at or after ``observe_at`` is not yet known and never
used; a window still open at ``observe_at`` (``ts + W >= observe_at``) is censored like the
other labels: 0 until a pay is known, possibly a false negative.

Where the pays come from. The pays an impression needs lie in its own time bucket and the
following ones, up to ``W`` later: forward in time, so the carry-in (a summary of earlier
buckets) cannot hold them. The per-user step that computes the carry-ins already sees every
bucket of the user; the user's known pays join that group, and for each bucket holding
impressions the pays that can fall in the window of one of its impressions are sent into the
bucket's group of the main shuffle (the *carry-out*, :func:`pays_by_bucket`). Pays are ~1% of
impressions, so this adds a few small elements, and no shuffle of impressions.
"""
from __future__ import annotations

import bisect
from typing import Iterable, Optional, Sequence

from pipelines.samples.labels import known_at
from pipelines.schema.raw_log import Impression

LABEL = "category_purchase"
Pay = tuple  # (pay_ts, category_id)


def known_pay(imp: Impression, observe_at: int) -> Optional[Pay]:
    """The impression's pay event if it is known at ``observe_at``, else None."""
    return (imp.pay_ts, imp.category_id) if known_at(imp.pay_ts, observe_at) else None


def pays_by_bucket(buckets: Iterable[int], pays: Iterable[Pay], window_seconds: int,
                   bucket_seconds: int) -> Iterable[tuple[int, tuple[Pay, ...]]]:
    """The carry-out of one user: for each bucket, the pays some impression of it may need.

    Bucket ``b`` holds ``ts`` in ``[b B, b B + B - 1]`` (``B = bucket_seconds``), so the union
    of its impressions' windows ``(ts, ts + W]`` is ``(b B, b B + B - 1 + W]``.

    Args:
      buckets: the user's buckets that hold impressions.
      pays: the user's known pays, any order.

    Returns:
      ``(bucket, pays in its windows' union, sorted)`` for each bucket with at least one.
    """
    pays = sorted(pays)
    times = [p[0] for p in pays]
    for bucket in sorted(buckets):
        start = bucket * bucket_seconds
        lo = bisect.bisect_right(times, start)
        hi = bisect.bisect_right(times, start + bucket_seconds - 1 + window_seconds, lo=lo)
        if lo < hi:
            yield bucket, tuple(pays[lo:hi])


def category_purchase_labels(impressions: Sequence[tuple[int, str]], pays: Iterable[Pay],
                             window_seconds: int) -> list[int]:
    """For each ``(ts, category_id)``: 1 iff a pay of that category has
    ``ts < pay_ts <= ts + window_seconds`` (``pays`` are the known ones: see the module)."""
    times_by_category: dict[str, list[int]] = {}
    for pay_ts, category in pays:
        times_by_category.setdefault(category, []).append(pay_ts)
    if not times_by_category:  # most user-buckets: pays are rare
        return [0] * len(impressions)
    for times in times_by_category.values():
        times.sort()
    labels = []
    for ts, category in impressions:
        times = times_by_category.get(category, ())
        # The first pay strictly after ts decides: a later one is further from ts.
        k = bisect.bisect_right(times, ts)
        labels.append(int(k < len(times) and times[k] <= ts + window_seconds))
    return labels
