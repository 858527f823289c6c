import random

from pipelines.samples.sequences import (LastClicksFn, carry_ins, last_clicks,
                                         point_in_time_sequences)


def test_point_in_time_golden():
    clicks = [(100, "i1", "c1"), (200, "i2", "c2"), (200, "i0", "c9"), (300, "i3", "c3")]
    seqs = point_in_time_sequences([200, 50, 301, 300], clicks, carry_in=[(10, "old", "c0")],
                                   length=3)
    # ts=200 must not see the clicks at 200 (strictly before); ties ordered by item id.
    assert seqs[0] == [(100, "i1", "c1"), (10, "old", "c0")]
    assert seqs[1] == [(10, "old", "c0")]
    assert seqs[2] == [(300, "i3", "c3"), (200, "i2", "c2"), (200, "i0", "c9")]
    assert seqs[3] == [(200, "i2", "c2"), (200, "i0", "c9"), (100, "i1", "c1")]


def test_carry_ins_only_from_earlier_buckets():
    tails = [(1, [(15, "a", "x"), (16, "b", "x")]), (3, [(35, "c", "y")])]
    got = dict(carry_ins(tails, impression_buckets=[0, 1, 2, 3, 4], length=2))
    assert got == {0: [], 1: [], 2: [(15, "a", "x"), (16, "b", "x")],
                   3: [(15, "a", "x"), (16, "b", "x")], 4: [(16, "b", "x"), (35, "c", "y")]}


def test_combine_fn_equals_sort():
    rng = random.Random(0)
    clicks = [(rng.randrange(1000), f"i{rng.randrange(50)}", "c") for _ in range(500)]
    fn = LastClicksFn(7)
    parts = [clicks[:130], clicks[130:400], clicks[400:]]
    accs = []
    for part in parts:
        acc = fn.create_accumulator()
        for c in part:
            acc = fn.add_input(acc, c)
        accs.append(acc)
    assert fn.extract_output(fn.merge_accumulators(accs)) == last_clicks(clicks, 7)
    assert len(last_clicks(clicks, 7)) == 7


def test_bucketed_equals_brute_force():
    """Splitting a history into buckets + carry-ins gives the same sequences as one pass."""
    rng = random.Random(1)
    for _ in range(50):
        clicks = [(rng.randrange(10_000), f"i{k}", "c") for k in range(rng.randrange(60))]
        imps = [rng.randrange(10_000) for _ in range(rng.randrange(1, 40))]
        L, width = rng.randrange(1, 6), rng.choice([7, 100, 1000, 20_000])
        expected = [sorted((c for c in clicks if c[0] < ts), reverse=True)[:L] for ts in imps]
        tails = [(b, last_clicks([c for c in clicks if c[0] // width == b], L))
                 for b in {c[0] // width for c in clicks}]
        carry = dict(carry_ins(tails, [t // width for t in imps], L))
        got = [None] * len(imps)
        for b in {t // width for t in imps}:
            idx = [i for i, t in enumerate(imps) if t // width == b]
            seqs = point_in_time_sequences([imps[i] for i in idx],
                                           [c for c in clicks if c[0] // width == b],
                                           carry[b], L)
            for i, s in zip(idx, seqs):
                got[i] = s
        assert got == expected
