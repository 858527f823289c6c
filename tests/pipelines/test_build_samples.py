"""End-to-end tests of ranking-pipeline on hand-made and random logs (local runner)."""
import csv
import glob
import json
import math
import random

import pytest
import tensorflow as tf

from pipelines import cli
from pipelines.samples.category_affinity import RELATED_DIR, load_related
from pipelines.samples.example import decode
from pipelines.runner import make_pipeline
from ranking.data.layout import file_day

T0 = 1767225600  # 2026-01-01 UTC
HEADER = ["impression_id", "user_id", "item_id", "category_id", "country", "scene", "ts",
          "click_ts", "pay_ts", "refund_ts", "device", "price"]
CONFIG = """
sequence: {length: 5, impression_length: 4, bucket_seconds: 3600}
crosses: {item_buckets: 1000, category_buckets: 50}
category_purchase: {enabled: true, window_days: 1}
category_affinity: {enabled: true, top_n: 2, recent_clicks: 3, min_user_impressions: 3,
                    own_top: 1}
extra_columns:
  - {name: device, kind: categorical}
  - {name: price, kind: numeric}
"""
# (raw CSV line, field named by the dead-letter reason)
MALFORMED = [
    ("b1,u1,i1,c1,US,home,notats,,,,ios,1", "'ts': 'notats'"),
    ("b2,u1,i1,c1,US,home,1767225600,1767225500,,,ios,1", "'click_ts' (1767225500) is before"),
    ("b3,u1,i1", "row has 3 fields but the header has 12"),
    ("b4,,i1,c1,US,home,1767225600,,,,ios,1", "missing required field 'user_id'"),
    ("b5,u1,i1,c1,US,home,1767225600,,1767229999,,ios,1", "'pay_ts' is 1767229999 but"),
    ("b6,u1,i1,c1,US,home,1767225600,,,,ios,cheap", "numeric field 'price': 'cheap'"),
]


def random_rows(seed: int, n: int):
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        ts = T0 + rng.randrange(3 * 86400)
        click = ts + rng.randrange(0, 120) if rng.random() < 0.35 else None
        pay = click + rng.randrange(0, 40 * 3600) if click and rng.random() < 0.4 else None
        refund = pay + rng.randrange(0, 3 * 86400) if pay and rng.random() < 0.3 else None
        rows.append({
            "impression_id": f"r{k}", "user_id": f"u{int(rng.paretovariate(1.2)) % 40}",
            "item_id": f"i{rng.randrange(60)}", "category_id": f"c{rng.randrange(8)}",
            "country": rng.choice(["US", "BR", ""]), "scene": rng.choice(["home", "search"]),
            "ts": ts, "click_ts": click, "pay_ts": pay, "refund_ts": refund,
            "device": rng.choice(["ios", "web"]), "price": round(rng.uniform(1, 50), 2)})
    return rows


def write_csv(path, rows, extra_lines=()):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for r in rows:
            w.writerow(["" if r[h] is None else r[h] for h in HEADER])
        for line in extra_lines:
            f.write(line + "\n")


def run_pipeline(tmp, input_glob, observe_at, extra=()):
    (tmp / "config.yaml").write_text(CONFIG)
    args, beam_args = cli.build_parser().parse_known_args([
        "--input", input_glob, "--output", str(tmp / "out"), "--observe-at", str(observe_at),
        "--config", str(tmp / "config.yaml"), *extra])
    summary = cli.run(args, beam_args)
    samples = {}
    for path in glob.glob(str(tmp / "out" / "samples" / "*.tfrecord")):
        for record in tf.data.TFRecordDataset(path):
            d = decode(record.numpy())
            samples[d["impression_id"][0]] = d
    dead = [json.loads(line) for path in glob.glob(str(tmp / "out" / "dead_letter" / "*"))
            for line in open(path)]
    return summary, samples, dead


def _nan_as_none(samples):
    """The samples with NaN floats (missing values) as None, so that equal ones compare
    equal."""
    return {iid: {k: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
                  for k, values in s.items()} for iid, s in samples.items()}


OBSERVE_AT = T0 + 2 * 86400 + 3 * 3600
W = 86400  # category_purchase.window_days: 1 in CONFIG


def category_purchase_by_definition(rows, impression, observe_at=OBSERVE_AT):
    """Brute force: a pay of the same user and category in (ts, ts + W], known at observe_at
    (observe_at None: every pay, known or not)."""
    ts = impression["ts"]
    return int(any(r["user_id"] == impression["user_id"]
                   and r["category_id"] == impression["category_id"]
                   and r["pay_ts"] is not None and ts < r["pay_ts"] <= ts + W
                   and (observe_at is None or r["pay_ts"] < observe_at) for r in rows))


def related_by_definition(rows, day, top_n=2, min_impressions=3, own_top=1):
    """Brute force of category_affinity's related sets for ``day``, over the impressions of
    earlier days (observable ones): per user s[k] = n_k^2 / n, t[c] = n_c / n but 0 for the
    user's own_top most shown categories (ties to the smaller id); lift, top_n above 1."""
    counts = {}
    for r in rows:
        if r["ts"] < OBSERVE_AT and r["ts"] // 86400 < day:
            user = counts.setdefault(r["user_id"], {})
            user[r["category_id"]] = user.get(r["category_id"], 0) + 1
    users = [user for user in counts.values() if sum(user.values()) >= min_impressions]
    sources, targets = [], []
    for user in users:
        n = sum(user.values())
        own = sorted(user, key=lambda c: (-user[c], c))[:own_top]
        sources.append({c: m * m / n for c, m in user.items()})
        targets.append({c: m / n for c, m in user.items() if c not in own})
    categories = sorted({c for user in users for c in user})
    related = {}
    for k in categories:
        squares = sum(s.get(k, 0) for s in sources)
        ranked = []
        for c in categories:
            expected = squares * sum(t.get(c, 0) for t in targets) / len(users)
            pairs = sum(s.get(k, 0) * t.get(c, 0) for s, t in zip(sources, targets))
            if c != k:
                ranked.append((-round(pairs / expected if expected else 0.0, 9), c))
        related[k] = {c for minus_lift, c in sorted(ranked)[:top_n] if -minus_lift > 1}
    return related


@pytest.fixture(scope="module")
def random_run_output(tmp_path_factory):
    """(the run's directory, (rows, summary, samples, dead letter))."""
    tmp = tmp_path_factory.mktemp("random")
    rows = random_rows(seed=7, n=1500)
    write_csv(tmp / "logs-0.csv", rows[:700], [line for line, _ in MALFORMED])
    write_csv(tmp / "logs-1.csv", rows[700:])
    summary, samples, dead = run_pipeline(tmp, str(tmp / "logs-*.csv"), OBSERVE_AT)
    return tmp, (rows, summary, samples, dead)


@pytest.fixture(scope="module")
def random_run(random_run_output):
    return random_run_output[1]


def test_counters_add_up_and_dead_letter_names_each_problem(random_run):
    rows, summary, samples, dead = random_run
    assert summary["rows_read"] == len(rows) + len(MALFORMED)
    assert summary["dead_lettered"] == len(MALFORMED) == len(dead)
    assert summary["valid_rows"] + summary["dead_lettered"] == summary["rows_read"]
    expected_kept = sum(r["ts"] < OBSERVE_AT for r in rows)
    assert summary["samples_written"] == len(samples) == expected_kept
    assert summary["not_yet_observable"] == len(rows) - expected_kept
    assert summary["balanced"]
    reasons = sorted(d["reason"] for d in dead)
    for _, words in MALFORMED:
        assert sum(words in r for r in reasons) == 1, (words, reasons)
    assert all(d["source"].startswith(str(d["source"]).split(":")[0]) for d in dead)
    assert {d["row"]["impression_id"] for d in dead if "row" in d} == {
        "b1", "b2", "b4", "b5", "b6"}


def test_no_feature_or_label_uses_the_future(random_run):
    """Property: every sequence entry precedes ts; every label/event time precedes observe_at."""
    rows, _, samples, _ = random_run
    by_id = {r["impression_id"]: r for r in rows}
    related_of_day = {}
    shares_seen = set()
    rows_of_user = {}
    for r in rows:
        rows_of_user.setdefault(r["user_id"], []).append(r)
    for iid, s in samples.items():
        ts = s["ts"][0]
        assert ts < OBSERVE_AT
        n = s["seq_length"][0]
        assert all(0 <= t < ts for t in s["seq_click_ts"][:n])
        assert s["seq_click_ts"][n:] == [-1] * (5 - n)
        for name in ("click_ts", "pay_ts", "refund_ts"):
            assert s[name][0] == -1 or s[name][0] < OBSERVE_AT
        # Brute-force reference: the same user's clicks strictly before ts, latest first.
        user = by_id[iid]["user_id"]
        clicks = sorted(((r["click_ts"], r["item_id"], r["category_id"]) for r in rows
                         if r["user_id"] == user and r["click_ts"] is not None
                         and r["click_ts"] < ts), reverse=True)[:5]
        assert s["seq_item_ids"][:n] == [c[1] for c in clicks]
        assert s["seq_category_ids"][:n] == [c[2] for c in clicks]
        assert s["seq_click_ts"][:n] == [c[0] for c in clicks]
        assert s["last_click_item_id"][0] == (clicks[0][1] if clicks else "")
        # Exposure history: the same user's impressions with an earlier ts, and the counts.
        earlier = sorted(((r["ts"], r["item_id"], r["category_id"]) for r in rows
                          if r["user_id"] == user and r["ts"] < ts), reverse=True)
        m = min(4, len(earlier))
        assert s["seq_imp_category_ids"] == [e[2] for e in earlier[:4]] + [""] * (4 - m)
        assert s["imp_count"] == [len(earlier)]
        assert s["click_count"] == [sum(r["user_id"] == user and r["click_ts"] is not None
                                        and r["click_ts"] < ts for r in rows)]
        # Item statistics: the 7 whole days before the impression's day, all users.
        item, day = by_id[iid]["item_id"], ts // 86400
        window = lambda t: t is not None and day - 7 <= t // 86400 < day  # noqa: E731
        assert s["item_imp_count"] == [sum(r["item_id"] == item and window(r["ts"])
                                           for r in rows)]
        assert s["item_click_count"] == [sum(r["item_id"] == item and window(r["click_ts"])
                                             for r in rows)]
        # Its share of every item's impressions over the same days (NaN: none there).
        total = sum(window(r["ts"]) for r in rows)
        if total:
            assert s["item_imp_per_million"] == pytest.approx(
                [(s["item_imp_count"][0] + 0.5) * 1e6 / total], rel=1e-6)
            shares_seen.add("positive")
        else:
            assert math.isnan(s["item_imp_per_million"][0])
            shares_seen.add("missing")
        # Related categories: co-exposure of the days before the impression's day.
        if day not in related_of_day:
            related_of_day[day] = related_by_definition(rows, day)
        related, target = related_of_day[day], by_id[iid]["category_id"]
        is_related = lambda c: c != target and target in related.get(c, ())  # noqa: E731
        assert s["related_click_count"] == [sum(is_related(c[2]) for c in clicks[:3])]
        assert s["related_imp_count"] == [sum(is_related(e[2]) for e in earlier[:4])]
        r = by_id[iid]
        seen = lambda t: t is not None and t < OBSERVE_AT  # noqa: E731
        assert s["click"][0] == int(seen(r["click_ts"]))
        assert s["conversion"][0] == int(seen(r["pay_ts"]))
        assert s["refund"][0] == int(seen(r["refund_ts"]))
        assert s["net_conversion"][0] == int(seen(r["pay_ts"]) and not seen(r["refund_ts"]))
        assert s["category_purchase"] == [
            category_purchase_by_definition(rows_of_user[user], r)], iid
    assert shares_seen == {"positive", "missing"}  # first-day rows and later ones


def test_related_counts_fixture_exercises_every_path(random_run):
    """The property test above can fail: related sets differ by day (none on the first, whose
    earlier days hold nothing), and both counts are positive for some samples and not others."""
    rows, _, samples, _ = random_run
    first = T0 // 86400
    assert related_by_definition(rows, first) == {}
    second, third = related_by_definition(rows, first + 1), related_by_definition(rows, first + 2)
    assert any(second.values()) and second != third
    for name in ("related_click_count", "related_imp_count"):
        values = [s[name][0] for s in samples.values()]
        assert sum(v > 0 for v in values) > 50 and sum(v == 0 for v in values) > 50, name
    assert max(s["related_click_count"][0] for s in samples.values()) <= 3


def test_related_tables_are_written_through_the_serving_day(random_run_output):
    """related_categories/*.jsonl holds each day's table as the samples used it, and the
    table of the day after the logs (the serving one); load_related reads it back."""
    tmp, (rows, _, _, _) = random_run_output
    tables = load_related(str(tmp / "out" / RELATED_DIR / "*.jsonl"))
    first, serving = T0 // 86400, (OBSERVE_AT - 1) // 86400 + 1
    assert sorted(tables) == list(range(first + 1, serving + 1))
    for day, table in tables.items():
        expected = related_by_definition(rows, day)
        assert {k: set(v) for k, v in table.items()} == expected, day
    assert any(tables[serving].values())


def test_labels_are_censored_somewhere(random_run):
    """The fixture really has events after observe_at, so the property test can fail."""
    rows, _, samples, _ = random_run
    censored = [r for r in rows if r["impression_id"] in samples and r["pay_ts"]
                and r["pay_ts"] >= OBSERVE_AT]
    assert censored
    assert all(samples[r["impression_id"]]["conversion"] == [0] for r in censored)


def test_category_purchase_fixture_exercises_every_path(random_run):
    """The property test above can fail: the fixture has category_purchase positives that are
    not the impression's own conversion, that come from a later bucket (carried out of it),
    and positives censored because their pay is at or after observe_at."""
    rows, summary, samples, _ = random_run
    kept = [r for r in rows if r["impression_id"] in samples]
    label = {r["impression_id"]: samples[r["impression_id"]]["category_purchase"][0]
             for r in kept}
    positives = [r for r in kept if label[r["impression_id"]]]
    assert summary["counters"]["label.category_purchase"] == len(positives)
    assert sum(not samples[r["impression_id"]]["conversion"][0] for r in positives) > 50
    later_bucket = [r for r in positives if not any(
        q["user_id"] == r["user_id"] and q["category_id"] == r["category_id"]
        and q["pay_ts"] is not None and r["ts"] < q["pay_ts"] < OBSERVE_AT
        and q["pay_ts"] // 3600 == r["ts"] // 3600 for q in rows)]
    assert len(later_bucket) > 20
    censored = [r for r in kept if category_purchase_by_definition(rows, r, observe_at=None)
                and not category_purchase_by_definition(rows, r)]
    assert len(censored) > 5 and not any(label[r["impression_id"]] for r in censored)


def test_category_purchase_golden(tmp_path):
    """Hand-made log, W = 1 day, 1-hour buckets, observe_at O = T0 + 3 days. Per category:
    cA: q1's pay (T0+600) is inside t1's window (same bucket) and is q1's own conversion;
        t7 (T0+700) comes after it; u2's t6 is another user's impression.
    cB: q2 pays at T0+86501, in a bucket 24 hours later: t2 (window ends T0+86500) misses it,
        t2b (window ends T0+86501, the closed end) and q2 itself get it.
    cC: t3 has only pays of other categories (cA, cB, cF) in its window.
    cE: q4 pays exactly at O: not known, so neither q4 nor t4 counts it.
    cF: q5 pays at T0+7200: t5 shown at that very second misses it (pay must be after ts),
        t5b one second earlier (the bucket before the pay's) gets it.
    The payers are in another file than the impressions they label.
    """
    O = T0 + 3 * 86400
    blank = dict(country="US", scene="home", click_ts=None, pay_ts=None, refund_ts=None,
                 device="ios", price=1.0)

    def row(iid, category, ts, pay=None, user="u1"):
        click = {} if pay is None else {"click_ts": ts + 10, "pay_ts": pay}
        return {**blank, "impression_id": iid, "user_id": user, "item_id": f"i_{iid}",
                "category_id": category, "ts": ts, **click}

    targets = [row("t1", "cA", T0), row("t7", "cA", T0 + 700), row("t6", "cA", T0, user="u2"),
               row("t2", "cB", T0 + 100), row("t2b", "cB", T0 + 101),
               row("t3", "cC", T0 + 300), row("t4", "cE", O - 1000),
               row("t5", "cF", T0 + 7200), row("t5b", "cF", T0 + 7199)]
    payers = [row("q1", "cA", T0 + 50, pay=T0 + 600), row("q2", "cB", T0 + 200, pay=T0 + 86501),
              row("q4", "cE", O - 900, pay=O), row("q5", "cF", T0 + 1000, pay=T0 + 7200)]
    write_csv(tmp_path / "logs-0.csv", targets)
    write_csv(tmp_path / "logs-1.csv", payers)
    summary, samples, _ = run_pipeline(tmp_path, str(tmp_path / "logs-*.csv"), O)
    got = {iid: s["category_purchase"][0] for iid, s in samples.items()}
    assert got == {"t1": 1, "q1": 1, "t7": 0, "t6": 0, "t2": 0, "t2b": 1, "q2": 1, "t3": 0,
                   "t4": 0, "q4": 0, "q5": 1, "t5": 0, "t5b": 1}
    assert samples["q4"]["conversion"] == [0]
    assert summary["counters"]["label.category_purchase"] == 6
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    spec = next(f for f in schema["features"] if f["name"] == "category_purchase")
    assert spec["role"] == "label" and "ts + 1 days" in spec["description"]


def test_crosses_equal_tensorflow_hash_on_the_same_strings(random_run):
    _, _, samples, _ = random_run
    strings, cat_strings, ids, cat_ids, imp_strings, imp_ids = [], [], [], [], [], []
    for s in samples.values():
        n = s["seq_length"][0]
        strings += [f"{x}\x1f{s['item_id'][0]}" for x in s["seq_item_ids"][:n]]
        cat_strings += [f"{x}\x1f{s['category_id'][0]}" for x in s["seq_category_ids"][:n]]
        ids += s["cross_seq_item_x_item"][:n]
        cat_ids += s["cross_seq_category_x_category"][:n]
        assert s["cross_seq_item_x_item"][n:] == [-1] * (5 - n)
        m = sum(x != "" for x in s["seq_imp_category_ids"])
        imp_strings += [f"{x}\x1f{s['category_id'][0]}" for x in s["seq_imp_category_ids"][:m]]
        imp_ids += s["cross_imp_category_x_category"][:m]
        assert s["cross_imp_category_x_category"][m:] == [-1] * (4 - m)
    assert len(ids) > 1000 and len(imp_ids) > 1000
    assert imp_ids == tf.strings.to_hash_bucket_fast(imp_strings, 50).numpy().tolist()
    assert ids == tf.strings.to_hash_bucket_fast(strings, 1000).numpy().tolist()
    assert cat_ids == tf.strings.to_hash_bucket_fast(cat_strings, 50).numpy().tolist()


def test_hand_made_log_golden(tmp_path):
    rows = [
        dict(impression_id="a1", user_id="u1", item_id="i1", category_id="c1", country="US",
             scene="home", ts=T0, click_ts=T0 + 10, pay_ts=None, refund_ts=None,
             device="ios", price=9.5),
        dict(impression_id="a2", user_id="u1", item_id="i2", category_id="c2", country="US",
             scene="home", ts=T0 + 10, click_ts=T0 + 20, pay_ts=T0 + 90000, refund_ts=None,
             device="ios", price=3),
        dict(impression_id="a3", user_id="u1", item_id="i3", category_id="c1", country="",
             scene="", ts=T0 + 86500, click_ts=None, pay_ts=None, refund_ts=None,
             device="", price=None),
        dict(impression_id="a4", user_id="u1", item_id="i4", category_id="c2", country="BR",
             scene="cart", ts=T0 + 200000, click_ts=None, pay_ts=None, refund_ts=None,
             device="web", price=1),
    ]
    write_csv(tmp_path / "logs.csv", rows)
    summary, samples, dead = run_pipeline(tmp_path, str(tmp_path / "logs.csv"), T0 + 100000)
    assert (summary["samples_written"], summary["not_yet_observable"], dead) == (3, 1, [])
    assert samples["a1"]["seq_length"] == [0]
    assert samples["a2"]["seq_item_ids"] == ["", "", "", "", ""]  # click at T0+10 is not < ts
    assert samples["a3"]["seq_item_ids"] == ["i2", "i1", "", "", ""]
    assert samples["a3"]["seq_click_ts"] == [T0 + 20, T0 + 10, -1, -1, -1]
    # a3 is in a later hour bucket: its exposure history comes from the carry-in.
    assert samples["a1"]["seq_imp_category_ids"] == ["", "", "", ""]
    assert samples["a2"]["seq_imp_category_ids"] == ["c1", "", "", ""]
    assert samples["a3"]["seq_imp_category_ids"] == ["c2", "c1", "", ""]
    assert [samples[a]["imp_count"][0] for a in ("a1", "a2", "a3")] == [0, 1, 2]
    assert [samples[a]["click_count"][0] for a in ("a1", "a2", "a3")] == [0, 0, 2]
    assert samples["a3"]["domain"] == ["default|default"]
    assert samples["a2"]["conversion"] == [1] and samples["a2"]["pay_ts"] == [T0 + 90000]
    assert samples["a1"]["price"] == [9.5] and samples["a3"]["device"] == [""]
    schema = json.loads((tmp_path / "out" / "schema.json").read_text())
    names = [f["name"] for f in schema["features"]]
    assert names.index("device") < names.index("seq_item_ids")
    cross = next(f for f in schema["features"] if f["name"] == "cross_seq_item_x_item")
    assert (cross["dtype"], cross["shape"], cross["buckets"]) == ("int64", [5], 1000)
    assert set(names) == set(samples["a1"])


def test_default_runner_is_local_and_offline():
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    assert isinstance(make_pipeline([]).runner, FnApiRunner)


def test_truth_rows_join_their_impression(tmp_path):
    rows = random_rows(seed=3, n=300)
    write_csv(tmp_path / "logs.csv", rows)
    truth = {r["impression_id"]: (round(k / 1000, 3), r) for k, r in enumerate(rows)}
    missing = next(r["impression_id"] for r in rows if r["ts"] < OBSERVE_AT)
    with open(tmp_path / "truth.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["impression_id", "user_id", "ts", "user_tier", "p_click", "p_pay",
                    "p_refund", "seq_same"])
        for iid, (p, r) in truth.items():
            if iid != missing:
                w.writerow([iid, r["user_id"], r["ts"], f"tier{p}", p, p / 2, p / 4, 0])
    summary, samples, _ = run_pipeline(tmp_path, str(tmp_path / "logs.csv"), OBSERVE_AT,
                                       ["--truth", str(tmp_path / "truth.csv")])
    assert summary["balanced"] and len(samples) == sum(r["ts"] < OBSERVE_AT for r in rows)
    assert summary["counters"]["truth_missing"] == int(missing in samples) == 1
    for iid, s in samples.items():
        if iid == missing:
            assert s["p_click"][0] != s["p_click"][0] and s["user_tier"] == [""]  # NaN
            continue
        p = truth[iid][0]
        assert s["p_click"] == pytest.approx([p]) and s["p_pay"] == pytest.approx([p / 2])
        assert s["p_refund"] == pytest.approx([p / 4]) and s["user_tier"] == [f"tier{p}"]


def test_tiny_bundle_bounds_give_the_same_samples(random_run, tmp_path, monkeypatch):
    """Draining the per-bundle pre-combined histories and packed events every few rows (so a
    user-bucket arrives in many pieces) changes nothing in the output."""
    from pipelines import build_samples

    rows, _, samples, _ = random_run
    monkeypatch.setattr(build_samples, "MAX_OPEN_HISTORIES", 3)
    monkeypatch.setattr(build_samples, "MAX_PACKED_EVENTS", 2)
    write_csv(tmp_path / "logs-0.csv", rows[:700])
    write_csv(tmp_path / "logs-1.csv", rows[700:])
    summary, drained, _ = run_pipeline(tmp_path, str(tmp_path / "logs-*.csv"), OBSERVE_AT)
    assert summary["balanced"] and len(drained) == len(samples) > 1000
    assert _nan_as_none(drained) == _nan_as_none(samples)


def test_samples_are_written_per_utc_day_and_a_rerun_is_refused(tmp_path):
    """Each file holds the samples of the UTC day its name carries (readers pick files by
    name instead of parsing ts); the bucket here is an hour, so days are not groups."""
    rows = random_rows(seed=11, n=400)
    write_csv(tmp_path / "logs.csv", rows)
    summary, samples, _ = run_pipeline(tmp_path, str(tmp_path / "logs.csv"), OBSERVE_AT)
    files = sorted(glob.glob(str(tmp_path / "out" / "samples" / "*")))
    days = {}
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            ts = decode(record.numpy())["ts"][0]
            assert ts // 86400 == file_day(path), (path, ts)
            days[file_day(path)] = days.get(file_day(path), 0) + 1
    kept = [r["ts"] for r in rows if r["ts"] < OBSERVE_AT]
    assert days == {d: sum(t // 86400 == d for t in kept) for d in {t // 86400 for t in kept}}
    assert len(days) == 3 and sum(days.values()) == summary["samples_written"] == len(samples)
    assert not glob.glob(str(tmp_path / "out" / ".tmp*"))  # the writer's temp folder is gone
    with pytest.raises(SystemExit, match=r"already holds 3 sample file\(s\)"):
        run_pipeline(tmp_path, str(tmp_path / "logs.csv"), OBSERVE_AT)
