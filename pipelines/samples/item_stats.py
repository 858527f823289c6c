"""Point-in-time item statistics: an item's impressions and clicks over the previous days.

A sample's ``item_imp_count`` / ``item_click_count`` count the target item's impressions and
clicks over the ``window_days`` whole UTC days *before* the impression's day: what a daily
batch job knows at the start of the day, so nothing of the impression's own day (or later)
leaks in. Popularity and click-through of an item are the strongest item-side signals of a
CTR model and an item id embedding learns them only for frequent items; the counts give them
to every item.

Computed in three small steps: counts per (item, day) pre-combined per bundle, summed per
(item, day), then per item the window sums for each day that has impressions of the item.
The result is a side input of one entry per (item, day) with impressions.
"""
from __future__ import annotations

from typing import Iterable

import apache_beam as beam

from ranking.data.layout import day_of


class ItemDayCounter:
    """Counts impressions and clicks per ``(item_id, day)`` (one bundle's worth)."""

    def __init__(self):
        self._counts: dict = {}

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, item_id: str, ts: int, slot: int) -> None:
        """``slot`` 0 counts an impression at ``ts``, 1 a click at ``ts``."""
        key = (item_id, day_of(ts))
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0]
        counts[slot] += 1

    def drain(self) -> Iterable[tuple]:
        """``((item_id, day), (impressions, clicks))`` per key since the last drain."""
        counts, self._counts = self._counts, {}
        for key, (imps, clicks) in counts.items():
            yield key, (imps, clicks)


def sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    imps = clicks = 0
    for i, c in pairs:
        imps += i
        clicks += c
    return imps, clicks


def window_counts(days: Iterable[tuple[int, int, int]],
                  window_days: int) -> Iterable[tuple[int, tuple[int, int]]]:
    """For each day of an item with impressions, the item's (impressions, clicks) summed over
    the ``window_days`` days strictly before it.

    Args:
      days: ``(day, impressions, clicks)`` of one item, at most one entry per day.
    """
    days = sorted(days)
    lo = 0
    imps = clicks = 0  # sums over days[lo:hi], the entries inside the current window
    hi = 0
    for day, day_imps, _ in days:
        while hi < len(days) and days[hi][0] < day:
            imps += days[hi][1]
            clicks += days[hi][2]
            hi += 1
        while lo < hi and days[lo][0] < day - window_days:
            imps -= days[lo][1]
            clicks -= days[lo][2]
            lo += 1
        if day_imps:
            yield day, (imps, clicks)


class ItemWindowStats(beam.PTransform):
    """``((item_id, day), (impressions, clicks))`` partial counts -> the same keys with the
    counts of the ``window_days`` days before ``day`` (days holding impressions only)."""

    def __init__(self, window_days: int):
        super().__init__()
        self._window_days = window_days

    def expand(self, partial_counts):
        return (partial_counts
                | "SumItemDay" >> beam.CombinePerKey(sum_pairs)
                | "ByItem" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1],) + tuple(kv[1])))
                | "GroupItem" >> beam.GroupByKey()
                | "WindowSums" >> beam.FlatMap(_item_windows, self._window_days))


def _item_windows(kv, window_days: int):
    item, days = kv
    for day, counts in window_counts(days, window_days):
        yield (item, day), counts
