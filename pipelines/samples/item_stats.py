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

``item_imp_per_million`` is the item's smoothed share of *all* impressions over the same
window, per million (:func:`impressions_per_million`). The raw count grows with the number of
days the window has seen (on the demo's 7-day logs the first sample day's window holds one
day, the test day's six), so a model trained on earlier days reads the test day's counts as
more popular items than they are; the share means the same on every day. On the 200k demo
its log correlates 0.98 with the simulator's true item popularity on the test day, and it
raises the demo PLE model's test CTR AUC by 0.0015 (median of 4 seeds,
``benchmarks/quality_vs_oracle.py``). Per million keeps its log in the range of the other log
counts (on the demo: about 1 for an unseen item to 9).
"""
from __future__ import annotations

import math
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


# Added to an item's window count: an item not yet seen gets a finite log share, below that
# of an item seen once.
SHARE_PSEUDO_COUNT = 0.5


def impressions_per_million(item_impressions: int, window_impressions: int) -> float:
    """``(item_impressions + 0.5) * 1e6 / window_impressions``: the item's smoothed share of
    all impressions over the item-stats window, per million; NaN (missing) when the window
    holds none (the logs' first day)."""
    if window_impressions <= 0:
        return math.nan
    return (item_impressions + SHARE_PSEUDO_COUNT) * 1e6 / window_impressions


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


class WindowImpressionTotals(beam.PTransform):
    """``((item_id, day), (impressions, clicks))`` partial counts -> ``(day, impressions of
    every item over the window_days days before day)``, for each day with impressions."""

    def __init__(self, window_days: int):
        super().__init__()
        self._window_days = window_days

    def expand(self, partial_counts):
        return (partial_counts
                | "ByDay" >> beam.Map(lambda kv: (kv[0][1], kv[1][0]))
                | "SumDay" >> beam.CombinePerKey(sum)
                | "AllDays" >> beam.combiners.ToList()
                | "WindowTotals" >> beam.FlatMap(_day_windows, self._window_days))


def _day_windows(days: list, window_days: int):
    for day, (impressions, _) in window_counts([(d, n, 0) for d, n in days], window_days):
        yield day, impressions
