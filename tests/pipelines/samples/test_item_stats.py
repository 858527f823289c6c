import math

from pipelines.samples.item_stats import (ItemDayCounter, _day_windows, day_of,
                                          impressions_per_million, sum_pairs, window_counts)

D = 86400


def test_window_counts_golden():
    # (day, impressions, clicks); day 13 has clicks only (its impressions were on day 12).
    days = [(10, 5, 1), (12, 3, 0), (13, 0, 2), (14, 4, 1), (20, 1, 0)]
    got = dict(window_counts(days, window_days=3))
    # day 10: nothing before; day 12: day 10 (in [9, 11]); day 14: days 12, 13 (in [11, 13]);
    # day 20: days 17-19, none. Day 13 has no impressions: no entry.
    assert got == {10: (0, 0), 12: (5, 1), 14: (3, 2), 20: (0, 0)}


def test_window_counts_equals_brute_force():
    import random
    rng = random.Random(3)
    for _ in range(100):
        days = {d: (rng.randrange(3), rng.randrange(2)) for d in rng.sample(range(40), 12)}
        w = rng.randrange(1, 9)
        got = dict(window_counts([(d, i, c) for d, (i, c) in days.items()], w))
        expected = {d: (sum(i for e, (i, _) in days.items() if d - w <= e < d),
                        sum(c for e, (_, c) in days.items() if d - w <= e < d))
                    for d, (i, _) in days.items() if i}
        assert got == expected


def test_counter_counts_per_item_day():
    counter = ItemDayCounter()
    counter.add("a", 5 * D + 10, 0)
    counter.add("a", 5 * D + 99, 0)
    counter.add("a", 6 * D, 1)
    counter.add("b", 5 * D, 0)
    assert len(counter) == 3
    assert dict(counter.drain()) == {("a", 5): (2, 0), ("a", 6): (0, 1), ("b", 5): (1, 0)}
    assert len(counter) == 0 and day_of(6 * D - 1) == 5
    assert sum_pairs([(1, 2), (3, 4)]) == (4, 6)


def test_impressions_per_million_golden():
    assert impressions_per_million(3, 14) == 250_000.0  # (3 + 0.5) * 1e6 / 14
    assert impressions_per_million(0, 4) == 125_000.0   # unseen item: half an impression
    assert math.isnan(impressions_per_million(0, 0))    # nothing before: missing


def test_window_totals_per_day():
    """All items' impressions per day -> the sums over the window_days days before each
    day: day 10 has none before it, day 11 day 10's 5, day 13 (window 11-12) day 11's 3."""
    days = [(13, 2), (10, 5), (11, 3)]
    assert sorted(_day_windows(days, window_days=2)) == [(10, 0), (11, 5), (13, 3)]
