"""Point-in-time click sequences, built per user-time-bucket in O(n log n).

A sample's sequence holds the user's last ``L`` clicks whose ``click_ts`` is strictly before
the impression's ``ts``, most recent first. A user's history is cut into time buckets
(``bucket_seconds``); each bucket is processed alone, seeded with the *carry-in*: the last
``L`` clicks of all earlier buckets. So a worker holds one user-bucket of events plus ``L``
clicks, never a user's whole history, and the work is a sort plus a linear merge.

A click is ``(click_ts, item_id, category_id)``; ties on ``click_ts`` break by item and
category so results do not depend on input order.
"""
from __future__ import annotations

import bisect
import collections
from typing import Iterable, Sequence

import apache_beam as beam

Click = tuple  # (click_ts, item_id, category_id)


def bucket_of(ts: int, bucket_seconds: int) -> int:
    return ts // bucket_seconds


def last_clicks(clicks: Iterable[Click], length: int) -> list[Click]:
    """The ``length`` most recent clicks, oldest first."""
    return sorted(clicks)[-length:]


class LastClicksFn(beam.CombineFn):
    """Combines clicks into the last ``length`` of them (a bucket's tail), oldest first."""

    def __init__(self, length: int):
        self._length = length

    def create_accumulator(self):
        return []

    def add_input(self, acc, click):
        acc.append(click)
        if len(acc) > 4 * self._length:  # trim lazily: amortized O(log L) per click
            acc[:] = last_clicks(acc, self._length)
        return acc

    def merge_accumulators(self, accs):
        return last_clicks((c for acc in accs for c in acc), self._length)

    def extract_output(self, acc):
        return last_clicks(acc, self._length)


def carry_ins(tails: Iterable[tuple[int, Sequence[Click]]], impression_buckets: Iterable[int],
              length: int) -> Iterable[tuple[int, list[Click]]]:
    """For each impression bucket, the last ``length`` clicks of all strictly earlier buckets.

    Args:
      tails: ``(bucket, last clicks of that bucket)`` for every bucket with clicks.
      impression_buckets: the buckets holding impressions of the same user.
    """
    tails = sorted((b, list(t)) for b, t in tails)
    tail_buckets = [b for b, _ in tails]
    running: list[list[Click]] = []  # running[i]: last clicks of tails[0..i]
    for _, tail in tails:
        running.append(last_clicks((running[-1] if running else []) + tail, length))
    for bucket in sorted(set(impression_buckets)):
        i = bisect.bisect_left(tail_buckets, bucket)  # tails strictly before `bucket`
        yield bucket, (running[i - 1] if i else [])


def point_in_time_sequences(impression_ts: Sequence[int], clicks: Iterable[Click],
                            carry_in: Sequence[Click], length: int) -> list[list[Click]]:
    """Sequences for impressions of one user-bucket.

    Args:
      impression_ts: the impressions' ``ts`` (any order).
      clicks: the clicks of this bucket (any order).
      carry_in: the last clicks of earlier buckets, oldest first (all earlier than ``clicks``).
      length: L.

    Returns:
      For each impression, in the order given, its last ``length`` clicks with
      ``click_ts < ts``, most recent first. Impressions with no click between them share
      one list object (most do: clicks are rare), so callers can encode each distinct
      sequence once; treat the lists as read-only.
    """
    order = sorted(range(len(impression_ts)), key=impression_ts.__getitem__)
    clicks = sorted(clicks)
    window = collections.deque(carry_in[-length:], maxlen=length)
    result: list[list[Click]] = [[]] * len(impression_ts)
    current = list(reversed(window))
    j = 0
    for i in order:
        ts = impression_ts[i]
        if j < len(clicks) and clicks[j][0] < ts:
            while j < len(clicks) and clicks[j][0] < ts:
                window.append(clicks[j])
                j += 1
            current = list(reversed(window))
        result[i] = current
    return result
