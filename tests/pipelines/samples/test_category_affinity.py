"""Related categories from co-exposure (pipelines/samples/category_affinity.py)."""
import json
import pickle

import pytest

from pipelines.config import CategoryAffinityConfig, ConfigError, SampleConfig, SequenceConfig
from pipelines.samples.category_affinity import (CoExposure, CoExposureFn, MergeExposureFn,
                                                 UserExposureCounter, exposure_before_each_day,
                                                 load_related, related_count, related_json_line)

# Three users' category impression counts (hand-computed lifts in test_lift_golden).
USERS = [(("a", "b"), (3, 1)), (("b", "c"), (1, 1)), (("a", "c"), (1, 1))]


def test_exposure_before_each_day_uses_earlier_days_only():
    days = {12: {"a": 1}, 10: {"a": 2, "b": 1}, 15: {"c": 4}}
    got = list(exposure_before_each_day(days, last_day=13, min_impressions=3))
    # Day 11 and 12: day 10's counts; day 13 adds day 12's; day 15 is after last_day.
    assert got == [(11, (("a", "b"), (2, 1))), (12, (("a", "b"), (2, 1))),
                   (13, (("a", "b"), (3, 1)))]
    # Below min_impressions before a day: that day is left out.
    assert list(exposure_before_each_day(days, last_day=13, min_impressions=4)) == [
        (13, (("a", "b"), (3, 1)))]
    assert list(exposure_before_each_day({}, last_day=13, min_impressions=1)) == []


def test_user_exposure_counts_merge_across_bundles():
    first, second = UserExposureCounter(), UserExposureCounter()
    for user, day, category in [("u1", 10, "a"), ("u1", 10, "a"), ("u1", 11, "b"),
                                ("u2", 10, "a")]:
        first.add(user, day, category)
    second.add("u1", 10, "a")
    second.add("u1", 12, "c")
    assert len(first) == 2
    parts = dict(first.drain())
    assert len(first) == 0 and parts == {"u1": {10: {"a": 2}, 11: {"b": 1}},
                                         "u2": {10: {"a": 1}}}
    fn = MergeExposureFn()
    left = fn.add_input(fn.create_accumulator(), parts["u1"])
    right = fn.add_input(fn.create_accumulator(), dict(second.drain())["u1"])
    assert fn.extract_output(fn.merge_accumulators([left, right])) == {
        10: {"a": 3}, 11: {"b": 1}, 12: {"c": 1}}


def test_lift_golden():
    """Counts n (shares f): u1 a 3 b 1 (.75 .25); u2 b 1 c 1 (.5 .5); u3 a 1 c 1 (.5 .5).
    s = n f^2: u1 a 2.25 b .25; u2 b .5 c .5; u3 a .5 c .5 -> sum s: a 2.75, b .75, c 1.
    own_top 0, t = f: sum t a 1.25, b .75, c 1 (mean over 3 users: 5/12, 1/4, 1/3).
      a->b 2.25*.25 / (2.75/4) = .818; a->c .5*.5 / (2.75/3) = .273; b->a .25*.75 /
      (.75*5/12) = .6; b->c .5*.5 / (.75/3) = 1.0 and c->b .5*.5 / (1/4) = 1.0 (not above
      1); c->a .25 / (5/12) = .6: no related category.
    own_top 1 zeroes each user's most shown category in t (ties to the smaller id): u1 a,
    u2 b, u3 a. t: u1 b .25; u2 c .5; u3 c .5 -> sum t a 0, b .25, c 1.
      a->b 2.25*.25 / (2.75*.25/3) = 2.45; a->c .25 / (2.75/3) = .273; b->c .25 / (.75/3) =
      1.0; nothing else above 0: a -> {b}."""
    plain, own = CoExposure(), CoExposure(own_top=1)
    for user in USERS:
        plain.add_user(*user)
        own.add_user(*user)
    assert plain.users == own.users == 3
    rows = [plain.index[c] for c in "abc"]
    assert plain.squares[rows] == pytest.approx([2.75, 0.75, 1.0])
    assert own.squares[rows] == pytest.approx([2.75, 0.75, 1.0])
    assert plain.shares[rows] == pytest.approx([1.25, 0.75, 1.0])
    assert own.shares[rows] == pytest.approx([0.0, 0.25, 1.0])
    assert plain.pairs[plain.index["a"], plain.index["b"]] == pytest.approx(0.5625)
    assert own.pairs[own.index["b"], own.index["a"]] == 0.0
    assert plain.related(top_n=2) == {"a": frozenset(), "b": frozenset(), "c": frozenset()}
    assert own.related(top_n=2) == {"a": frozenset({"b"}), "b": frozenset(), "c": frozenset()}


def test_own_top_leaves_out_a_second_interest():
    """10 users of 'phone' (10 of 20 impressions) are shown 'case' (2); half of them have a
    second interest 'shoe' (8), half 'y'. 10 other users: own category 10, 'x' 2, 'case' 1.
    s_phone = 20 * .5^2 = 5 per phone user, sum 50.
    own_top 0: mean t_shoe = 5 * .4 / 20 = .1 -> phone->shoe 5*5*.4 / (50 * .1) = 2.0;
      mean t_case = (10 * .1 + 10 / 13) / 20 = .0885 -> phone->case 10*5*.1 / (50 * .0885)
      = 1.13: 'shoe' wins.
    own_top 2: phone and shoe/y (and own, x) are no one's t: t_shoe = 0; t_case unchanged:
      'case' wins."""
    def users(acc):
        for second in ("shoe", "y"):
            for _ in range(5):
                acc.add_user(("case", "phone", second), (2, 10, 8))
        for i in range(10):
            acc.add_user(("case", f"own{i}", "x"), (1, 10, 2))
        return acc

    assert users(CoExposure()).related(top_n=1)["phone"] == {"shoe"}
    assert users(CoExposure(own_top=2)).related(top_n=1)["phone"] == {"case"}


def test_lift_is_directed_and_keeps_the_top_n():
    """Users dominated by 'phone' are shown 'case' and 'charger'; users dominated by 'case'
    are not shown phones; everyone sees some of 'x'. Shares of the 28 users (f):
      4 phone users: phone .5, case .25, charger .125, x .125
      4 case users: case .8, x .2;  20 others: x .2 and a category of their own .8
    s = n f^2 (n: 16, 10, 10): phone users case 1, phone 4; case users case 6.4.
    phone -> charger: .125 / (.5 / 28) = 7; phone -> case: .25 / (4.2 / 28) = 1.67;
    phone -> x: .125 / (5.3 / 28) = .66; case -> phone: 4*1*.5 / (29.6 * 2 / 28) = .95."""
    acc = CoExposure()
    for _ in range(4):
        acc.add_user(("case", "charger", "phone", "x"), (4, 2, 8, 2))
        acc.add_user(("case", "x"), (8, 2))
    for i in range(20):
        acc.add_user((f"own{i}", "x"), (8, 2))
    related = acc.related(top_n=2)
    assert related["phone"] == {"charger", "case"}
    assert "phone" not in related["case"]
    assert acc.related(top_n=1)["phone"] == {"charger"}


def test_merge_equals_one_accumulator_and_survives_pickling():
    whole = CoExposure()
    for user in USERS:
        whole.add_user(*user)
    left, right = CoExposure(capacity=1), CoExposure(capacity=1)  # forces growth
    left.add_user(*USERS[0])
    right.add_user(*USERS[2])
    right.add_user(*USERS[1])
    fn = CoExposureFn(top_n=2, own_top=0)
    merged = fn.merge_accumulators([pickle.loads(pickle.dumps(left)), right])
    assert merged.users == 3
    assert fn.extract_output(merged) == whole.related(top_n=2)
    for k in "abc":
        for c in "abc":
            assert merged.pairs[merged.index[k], merged.index[c]] == pytest.approx(
                whole.pairs[whole.index[k], whole.index[c]])


def test_related_count():
    related = {"phone": frozenset({"case", "charger"}), "case": frozenset({"bag"})}
    # The target's own category never counts; unknown categories have no related set.
    assert related_count(["phone", "case", "phone", "case", "shoe"], "case", related) == 2
    assert related_count(["case", "phone"], "bag", related) == 1
    assert related_count([], "case", related) == 0
    assert related_count(["phone"], "case", {}) == 0


def test_config_errors_name_the_field_and_value():
    with pytest.raises(ConfigError, match=r"category_affinity.top_n must be >= 1, got 0"):
        CategoryAffinityConfig(top_n=0)
    with pytest.raises(ConfigError, match=r"category_affinity.own_top must be >= 0, got -1"):
        CategoryAffinityConfig(own_top=-1)
    with pytest.raises(ConfigError, match=r"recent_clicks \(6\) must be <= sequence.length"):
        SampleConfig(sequence=SequenceConfig(length=5),
                     category_affinity=CategoryAffinityConfig(enabled=True, recent_clicks=6))


def test_related_tables_round_trip_through_json_lines(tmp_path):
    day = 20461  # 2026-01-08
    line = related_json_line((day, {"b": frozenset({"c", "a"}), "a": frozenset()}))
    assert json.loads(line) == {"day": day, "date": "2026-01-08",
                                "related": {"a": [], "b": ["a", "c"]}}
    (tmp_path / "part-00000-of-00001.jsonl").write_text(line + "\n")
    assert load_related(str(tmp_path / "*.jsonl")) == {
        day: {"a": frozenset(), "b": frozenset({"a", "c"})}}
    with pytest.raises(FileNotFoundError, match="no related-category tables match"):
        load_related(str(tmp_path / "missing" / "*.jsonl"))
