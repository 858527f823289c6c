"""Point-in-time user history, built per user-time-bucket in O(n log n).

A sample's history is what the user did strictly before the impression's ``ts``:

* the click sequence: the last ``L`` clicks with ``click_ts < ts``, most recent first;
* the exposure sequence: the last ``K`` impressions with an earlier ``ts``, most recent first
  (what the user was shown reveals their tastes long before they click: clicks are rare);
* counts: all impressions and all clicks before ``ts``.

A user's history is cut into time buckets (``bucket_seconds``); each bucket is processed
alone, seeded with the *carry-in*: a :class:`History` summary of all earlier buckets (their
counts and their last ``K`` impressions and ``L`` clicks). So a worker holds one user-bucket
of events plus a bounded summary, never a user's whole history, and the work is a sort plus
a linear merge.

An event is ``(ts, item_id, category_id)`` (a click's ts is its ``click_ts``); ties on ``ts``
break by item and category so results do not depend on input order.
"""
from __future__ import annotations

import bisect
import collections
from typing import Iterable, NamedTuple, Sequence

import apache_beam as beam

Event = tuple  # (ts, item_id, category_id)


def bucket_of(ts: int, bucket_seconds: int) -> int:
    return ts // bucket_seconds


def last_events(events: Iterable[Event], length: int) -> list[Event]:
    """The ``length`` most recent events, oldest first."""
    return sorted(events)[-length:] if length else []


class History(NamedTuple):
    """What a span of a user's time (a bucket, or all buckets before one) leaves behind."""

    impressions: int = 0
    impression_tail: tuple = ()  # the last K impressions, oldest first
    clicks: int = 0
    click_tail: tuple = ()       # the last L clicks, oldest first


EMPTY_HISTORY = History()


class HistoryLengths(NamedTuple):
    impressions: int  # K
    clicks: int       # L


def merge_histories(histories: Iterable[History], lengths: HistoryLengths) -> History:
    """The summary of the union of disjoint spans."""
    histories = list(histories)
    return History(
        sum(h.impressions for h in histories),
        tuple(last_events((e for h in histories for e in h.impression_tail),
                          lengths.impressions)),
        sum(h.clicks for h in histories),
        tuple(last_events((e for h in histories for e in h.click_tail), lengths.clicks)))


class HistoryBuilder:
    """Accumulates impressions and clicks per key into :class:`History` summaries.

    Tails are trimmed lazily (at 4x their length), so adding an event is amortized
    O(log length).
    """

    def __init__(self, lengths: HistoryLengths):
        self._lengths = lengths
        self._open: dict = {}  # key -> [impressions, impression events, clicks, click events]

    def __len__(self) -> int:
        return len(self._open)

    def _entry(self, key) -> list:
        entry = self._open.get(key)
        if entry is None:
            entry = self._open[key] = [0, [], 0, []]
        return entry

    def add_impression(self, key, event: Event) -> None:
        self._add(self._entry(key), 0, event, self._lengths.impressions)

    def add_click(self, key, event: Event) -> None:
        self._add(self._entry(key), 2, event, self._lengths.clicks)

    @staticmethod
    def _add(entry: list, slot: int, event: Event, length: int) -> None:
        entry[slot] += 1
        tail = entry[slot + 1]
        tail.append(event)
        if len(tail) > 4 * length:
            tail[:] = last_events(tail, length)

    def drain(self) -> Iterable[tuple]:
        """``(key, History)`` per key seen since the last drain."""
        opened, self._open = self._open, {}
        lengths = self._lengths
        for key, (n_imp, imps, n_click, clicks) in opened.items():
            yield key, History(n_imp, tuple(last_events(imps, lengths.impressions)),
                               n_click, tuple(last_events(clicks, lengths.clicks)))


class MergeHistoriesFn(beam.CombineFn):
    """Combines partial :class:`History` summaries of one user-bucket into one."""

    def __init__(self, lengths: HistoryLengths):
        self._lengths = lengths

    def create_accumulator(self):
        return EMPTY_HISTORY

    def add_input(self, acc, history):
        return merge_histories((acc, history), self._lengths)

    def merge_accumulators(self, accs):
        return merge_histories(accs, self._lengths)

    def extract_output(self, acc):
        return acc


def carry_ins(histories: Iterable[tuple[int, History]],
              lengths: HistoryLengths) -> Iterable[tuple[int, History]]:
    """For each bucket holding impressions, the summary of all strictly earlier buckets.

    Args:
      histories: ``(bucket, History of that bucket)`` for every bucket of one user.
    """
    running = EMPTY_HISTORY
    for bucket, history in sorted(histories):
        if history.impressions:
            yield bucket, running
        running = merge_histories((running, history), lengths)


def point_in_time(query_ts: Sequence[int], events: Iterable[Event], carry_tail: Sequence[Event],
                  carry_count: int, length: int) -> tuple[list[list[Event]], list[int]]:
    """Sequences and counts of earlier events for the queries of one user-bucket.

    Args:
      query_ts: the impressions' ``ts`` (any order).
      events: this bucket's events (any order).
      carry_tail: the last events of earlier buckets, oldest first (all earlier than ``events``).
      carry_count: how many events the earlier buckets hold.
      length: the sequence length.

    Returns:
      For each query, in the order given: its last ``length`` events with ``ts`` strictly
      before the query's, most recent first, and the number of all such events. Queries with
      no event between them share one list object (most do for clicks: they are rare), so
      callers can encode each distinct sequence once; treat the lists as read-only.
    """
    order = sorted(range(len(query_ts)), key=query_ts.__getitem__)
    events = sorted(events)
    window = collections.deque(carry_tail[-length:] if length else (), maxlen=length)
    sequences: list[list[Event]] = [[]] * len(query_ts)
    counts = [carry_count] * len(query_ts)
    current = list(reversed(window))
    j = 0
    for i in order:
        ts = query_ts[i]
        if j < len(events) and events[j][0] < ts:
            k = bisect.bisect_left(events, (ts,), lo=j)
            window.extend(events[j:k])
            j = k
            current = list(reversed(window))
        sequences[i] = current
        counts[i] += j
    return sequences, counts
