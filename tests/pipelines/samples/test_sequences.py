import random

from pipelines.samples.sequences import (EMPTY_HISTORY, History, HistoryBuilder,
                                         HistoryLengths, MergeHistoriesFn, carry_ins,
                                         last_events, merge_histories, point_in_time)


def test_point_in_time_golden():
    clicks = [(100, "i1", "c1"), (200, "i2", "c2"), (200, "i0", "c9"), (300, "i3", "c3")]
    seqs, counts = point_in_time([200, 50, 301, 300], clicks, carry_tail=[(10, "old", "c0")],
                                 carry_count=4, length=3)
    # ts=200 must not see the clicks at 200 (strictly before); ties ordered by item id.
    assert seqs[0] == [(100, "i1", "c1"), (10, "old", "c0")]
    assert seqs[1] == [(10, "old", "c0")]
    assert seqs[2] == [(300, "i3", "c3"), (200, "i2", "c2"), (200, "i0", "c9")]
    assert seqs[3] == [(200, "i2", "c2"), (200, "i0", "c9"), (100, "i1", "c1")]
    # 4 earlier-bucket events + this bucket's events strictly before each ts.
    assert counts == [5, 4, 8, 7]


def test_carry_ins_only_from_earlier_buckets():
    lengths = HistoryLengths(impressions=2, clicks=2)
    histories = [
        (0, History(1, ((5, "z", "w"),), 0, ())),
        (1, History(0, (), 2, ((15, "a", "x"), (16, "b", "x")))),
        (2, History(3, ((20, "p", "q"), (21, "r", "q")), 0, ())),
        (3, History(1, ((30, "s", "q"),), 1, ((35, "c", "y"),))),
        (4, History(1, ((40, "t", "q"),), 0, ())),
    ]
    got = dict(carry_ins(histories, lengths))
    # Bucket 1 has no impressions: no carry-in for it.
    assert got == {
        0: EMPTY_HISTORY,
        2: History(1, ((5, "z", "w"),), 2, ((15, "a", "x"), (16, "b", "x"))),
        3: History(4, ((20, "p", "q"), (21, "r", "q")), 2, ((15, "a", "x"), (16, "b", "x"))),
        4: History(5, ((21, "r", "q"), (30, "s", "q")), 3, ((16, "b", "x"), (35, "c", "y"))),
    }


def test_partial_histories_combine_to_the_whole():
    """Per-bundle builders + the CombineFn equal one summary of all events."""
    rng = random.Random(0)
    lengths = HistoryLengths(impressions=5, clicks=3)
    imps = [(rng.randrange(1000), f"i{rng.randrange(50)}", "c") for _ in range(400)]
    clicks = [(rng.randrange(1000), f"i{rng.randrange(50)}", "c") for _ in range(90)]
    partials = []
    for lo, hi in ((0, 130), (130, 300), (300, 400)):
        builder = HistoryBuilder(lengths)
        for e in imps[lo:hi]:
            builder.add_impression("k", e)
        for e in clicks[lo // 4:hi // 4]:
            builder.add_click("k", e)
        assert len(builder) == 1
        partials += [h for _, h in builder.drain()]
        assert len(builder) == 0
    fn = MergeHistoriesFn(lengths)
    acc = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), p) for p in partials])
    expected = History(400, tuple(last_events(imps, 5)), 90, tuple(last_events(clicks, 3)))
    assert fn.extract_output(acc) == expected
    assert merge_histories(partials, lengths) == expected


def test_bucketed_equals_brute_force():
    """Splitting a history into buckets + carry-ins gives the same sequences and counts as
    one pass over the whole history."""
    rng = random.Random(1)
    for _ in range(50):
        clicks = [(rng.randrange(10_000), f"i{k}", "c") for k in range(rng.randrange(60))]
        imps = [rng.randrange(10_000) for _ in range(rng.randrange(1, 40))]
        L, width = rng.randrange(1, 6), rng.choice([7, 100, 1000, 20_000])
        lengths = HistoryLengths(impressions=1, clicks=L)
        before = [[c for c in clicks if c[0] < ts] for ts in imps]
        expected = [sorted(b, reverse=True)[:L] for b in before]
        builder = HistoryBuilder(lengths)
        for ts in imps:
            builder.add_impression(ts // width, (ts, "x", "y"))
        for c in clicks:
            builder.add_click(c[0] // width, c)
        carry = dict(carry_ins(builder.drain(), lengths))
        got, got_counts = [None] * len(imps), [None] * len(imps)
        for b in {t // width for t in imps}:
            idx = [i for i, t in enumerate(imps) if t // width == b]
            seqs, counts = point_in_time([imps[i] for i in idx],
                                         [c for c in clicks if c[0] // width == b],
                                         carry[b].click_tail, carry[b].clicks, L)
            for i, s, n in zip(idx, seqs, counts):
                got[i], got_counts[i] = s, n
        assert got == expected
        assert got_counts == [len(b) for b in before]
