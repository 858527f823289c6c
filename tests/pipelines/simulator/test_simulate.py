"""Tests of the log simulator (pipelines.simulator): schema, determinism, rates, ground truth."""
from __future__ import annotations

import bisect
import csv
import glob
import json
import os
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.schema.raw_log import parse_row
from pipelines.simulator import SimConfig, read_related, run_simulation
from pipelines.simulator import cli
from pipelines.simulator import world as W

EXTRAS = (("device", "categorical"), ("price", "numeric"))
SEED = 3
N_MAIN = 50_000


def _read_csv_dir(directory):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "part-*.csv"))):
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def _read_jsonl_dir(directory):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "part-*.jsonl"))):
        with open(path) as f:
            rows.extend(json.loads(line) for line in f)
    return rows


def _read_parquet_dir(directory):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "part-*.parquet"))):
        rows.extend(pq.read_table(path).to_pylist())
    return rows


def _all_files(out):
    files = {}
    for root, _, names in os.walk(out):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, out)] = f.read()
    return files


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sim_main"))
    assert cli.main(["--out", out, "--impressions", str(N_MAIN), "--seed", str(SEED),
                     "--workers", "1"]) == 0
    with open(os.path.join(out, "simulation.json")) as f:
        summary = json.load(f)
    raw = _read_csv_dir(os.path.join(out, "impressions"))
    truth = {r["impression_id"]: r for r in _read_csv_dir(os.path.join(out, "truth"))}
    parsed = [parse_row(r, EXTRAS) for r in raw]
    return {"out": out, "summary": summary, "raw": raw, "rows": parsed, "truth": truth}


# ---- schema and files -------------------------------------------------------------------------

def test_every_row_parses_and_ids_unique(main_run):
    rows = main_run["rows"]
    assert len(rows) == N_MAIN
    ids = [r.impression_id for r in rows]
    assert len(set(ids)) == N_MAIN
    header = list(main_run["raw"][0].keys())
    assert header == ["impression_id", "user_id", "item_id", "category_id", "country", "scene",
                      "ts", "click_ts", "pay_ts", "refund_ts", "device", "price"]
    # Missing timestamps are empty strings, never "nan"; extras are typed and present.
    assert all(r["pay_ts"] in ("",) or r["pay_ts"].isdigit() for r in main_run["raw"])
    assert {dict(r.extras)["device"] for r in rows} == {"ios", "android", "web"}
    prices = np.array([dict(r.extras)["price"] for r in rows])
    assert np.isfinite(prices).all() and prices.min() > 0


def test_truth_joins_one_to_one(main_run):
    truth = main_run["truth"]
    assert len(truth) == N_MAIN
    assert set(truth) == {r.impression_id for r in main_run["rows"]}
    for t in list(truth.values())[:2000]:
        for col in ("p_click", "p_pay", "p_refund"):
            assert 0.0 < float(t[col]) < 1.0
        assert t["user_tier"] in W.TIERS


def test_summary_counts_match_files(main_run):
    rows, s = main_run["rows"], main_run["summary"]["totals"]
    assert s["impressions"] == len(rows)
    assert s["clicks"] == sum(r.click_ts is not None for r in rows)
    assert s["pays"] == sum(r.pay_ts is not None for r in rows)
    assert s["refunds"] == sum(r.refund_ts is not None for r in rows)
    assert s["seq_inexact_steps"] == 0


def test_timestamps_window_and_delays(main_run):
    rows = main_run["rows"]
    start = 1_767_225_600
    end = start + 7 * 86400
    ts = np.array([r.ts for r in rows])
    assert ts.min() >= start and np.mean(ts < end) > 0.998
    click_delay = np.array([r.click_ts - r.ts for r in rows if r.click_ts is not None])
    assert click_delay.min() >= 1 and click_delay.max() <= 1800
    assert 2 <= np.median(click_delay) <= 30
    pay_delay = np.array([r.pay_ts - r.click_ts for r in rows if r.pay_ts is not None])
    assert np.median(pay_delay) > 3600          # hours to days
    assert np.percentile(pay_delay, 90) > 86400
    refund_delay = np.array([r.refund_ts - r.pay_ts for r in rows if r.refund_ts is not None])
    assert refund_delay.min() >= 86400
    # Events after the window are kept for the pipeline to censor.
    assert sum(r.pay_ts is not None and r.pay_ts >= end for r in rows) > 10
    # Daily cycle: the busiest UTC hour has well over twice the traffic of the quietest.
    hours = np.bincount(((ts - start) % 86400) // 3600, minlength=24)
    assert hours.max() > 2.5 * hours.min()
    # Each of the 7 days carries its share.
    days = np.bincount((ts[ts < end] - start) // 86400, minlength=7)
    assert days.min() > 0.8 * N_MAIN / 7


# ---- rates, domains, tiers --------------------------------------------------------------------

def test_rates_in_bands(main_run):
    rows = main_run["rows"]
    clicks = sum(r.click_ts is not None for r in rows)
    pays = sum(r.pay_ts is not None for r in rows)
    refunds = sum(r.refund_ts is not None for r in rows)
    ctr, cvr, refund_rate = clicks / len(rows), pays / clicks, refunds / pays
    assert 0.04 <= ctr <= 0.09, ctr
    assert 0.09 - 0.025 <= cvr <= 0.09 + 0.025, cvr
    assert 0.14 - 0.06 <= refund_rate <= 0.14 + 0.06, refund_rate


def test_all_domains_present_with_unequal_traffic_and_rates(main_run):
    rows = main_run["rows"]
    domains = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        d = domains[r.domain]
        d[0] += 1
        d[1] += r.click_ts is not None
        d[2] += r.pay_ts is not None
    assert set(domains) == set(W.domain_names())
    traffic = np.array([v[0] for v in domains.values()])
    assert traffic.max() > 5 * traffic.min()
    ctr = np.array([v[1] / v[0] for v in domains.values()])
    assert ctr.max() > 2 * ctr.min()
    cvr = np.array([v[2] / v[1] for v in domains.values()])
    assert cvr.max() > 1.5 * cvr.min()
    by_name = main_run["summary"]["domains"]
    assert sum(v["impressions"] for v in by_name.values()) == N_MAIN


def test_domain_specific_feature_effects():
    # Not just shifted intercepts: the slope of a feature changes (even its sign) by domain.
    assert W.CLICK_PRICE.min() < 0 < W.CLICK_PRICE.max()
    for table in (W.CLICK_POP, W.CLICK_TASTE, W.CLICK_SEQ, W.PAY_PRICE):
        assert table.shape == (len(W.COUNTRIES), len(W.SCENES))
        magnitude = np.abs(table)
        assert magnitude.max() > 2 * magnitude.min() > 0
        assert np.all(np.sign(table) == np.sign(table.flat[0]))
    assert np.ptp(W.CLICK_DEVICE[:, :, 0]) > 0.2


def test_tiers_long_tailed(main_run):
    per_user = defaultdict(int)
    for r in main_run["rows"]:
        per_user[r.user_id] += 1
    tier_of = {}
    with open(os.path.join(main_run["out"], "world", "users.csv"), newline="") as f:
        for u in csv.DictReader(f):
            tier_of[u["user_id"]] = u["tier"]
            assert per_user[u["user_id"]] == int(u["impressions"])
    assert set(tier_of) == set(per_user)
    users = defaultdict(int)
    imps = defaultdict(int)
    for u, n in per_user.items():
        users[tier_of[u]] += 1
        imps[tier_of[u]] += n
    ipu = {t: imps[t] / users[t] for t in W.TIERS}
    assert ipu["heavy"] > 10 * ipu["light"]
    assert ipu["heavy"] > ipu["medium"] > ipu["light"]
    total_users = sum(users.values())
    assert users["heavy"] / total_users < 0.08
    assert imps["heavy"] / N_MAIN > 0.25
    assert users["light"] / total_users > 0.6
    # The truth file agrees with the user table.
    truth = main_run["truth"]
    for r in main_run["rows"][:5000]:
        assert truth[r.impression_id]["user_tier"] == tier_of[r.user_id]
    assert main_run["summary"]["tiers"]["heavy"]["users"] == users["heavy"]


# ---- the co-occurrence effect -----------------------------------------------------------------

def _recompute_sequence_matches(rows, related, seq_len):
    """Independently: last ``seq_len`` clicks with click_ts < ts; ties by (ts, file order)."""
    by_user = defaultdict(list)
    for pos, r in enumerate(rows):
        by_user[r.user_id].append((pos, r))
    out = {}
    for items in by_user.values():
        clicks = sorted((r.click_ts, r.ts, pos, r.category_id)
                        for pos, r in items if r.click_ts is not None)
        click_times = [c[0] for c in clicks]
        for pos, r in items:
            n = bisect.bisect_left(click_times, r.ts)      # clicks strictly before ts
            last = clicks[max(0, n - seq_len):n]
            same = sum(c[3] == r.category_id for c in last)
            rel = sum(r.category_id in related[c[3]] for c in last)
            out[r.impression_id] = (same, rel)
    return out


def test_cooccurrence_matches_point_in_time_recomputation(main_run):
    related = read_related(main_run["out"])
    assert all(len(v) == W.RELATED_PER_CATEGORY for v in related.values())
    seq_len = main_run["summary"]["world"]["seq_len"]
    recomputed = _recompute_sequence_matches(main_run["rows"], related, seq_len)
    truth = main_run["truth"]
    mismatches = sum(
        recomputed[i] != (int(t["seq_same"]), int(t["seq_related"])) for i, t in truth.items())
    assert mismatches == 0
    n_match = sum(1 for v in recomputed.values() if v != (0, 0))
    assert 0.1 * N_MAIN < n_match < 0.6 * N_MAIN


def test_cooccurrence_raises_click_rate(main_run):
    related = read_related(main_run["out"])
    recomputed = _recompute_sequence_matches(main_run["rows"], related, W.SEQ_LEN)
    tastes = {}
    with open(os.path.join(main_run["out"], "world", "users.csv"), newline="") as f:
        for u in csv.DictReader(f):
            tastes[u["user_id"]] = set(u["taste_category_ids"].split())
    # Stratify by "target in the user's taste" so the effect is not just taste in disguise.
    counts = defaultdict(lambda: [0, 0])
    for r in main_run["rows"]:
        same, rel = recomputed[r.impression_id]
        key = (r.category_id in tastes[r.user_id], same + rel > 0)
        counts[key][0] += 1
        counts[key][1] += r.click_ts is not None
    rate = {k: c / n for k, (n, c) in counts.items()}
    overall_with = sum(counts[(t, True)][1] for t in (True, False)) / sum(
        counts[(t, True)][0] for t in (True, False))
    overall_without = sum(counts[(t, False)][1] for t in (True, False)) / sum(
        counts[(t, False)][0] for t in (True, False))
    assert overall_with > 2.0 * overall_without, (overall_with, overall_without)
    for in_taste in (True, False):
        assert rate[(in_taste, True)] > 1.4 * rate[(in_taste, False)], rate
    # Same-category matches and related-category matches each help.
    truth = main_run["truth"]
    only_related = [r for r in main_run["rows"]
                    if truth[r.impression_id]["seq_same"] == "0"
                    and truth[r.impression_id]["seq_related"] != "0"]
    none = [r for r in main_run["rows"]
            if truth[r.impression_id]["seq_same"] == "0"
            and truth[r.impression_id]["seq_related"] == "0"]
    ctr_rel = np.mean([r.click_ts is not None for r in only_related])
    ctr_none = np.mean([r.click_ts is not None for r in none])
    assert len(only_related) > 1000 and ctr_rel > 1.3 * ctr_none


# ---- truth consistent with the events ---------------------------------------------------------

def test_truth_probabilities_match_events(main_run):
    rows, truth = main_run["rows"], main_run["truth"]
    p_click = np.array([float(truth[r.impression_id]["p_click"]) for r in rows])
    clicked = np.array([r.click_ts is not None for r in rows])
    se = np.sqrt(p_click.mean() * (1 - p_click.mean()) / len(rows))
    assert abs(p_click.mean() - clicked.mean()) < 4 * se
    # Calibrated and discriminative: deciles of p_click.
    order = np.argsort(p_click)
    deciles = np.array_split(order, 10)
    emp = np.array([clicked[d].mean() for d in deciles])
    pred = np.array([p_click[d].mean() for d in deciles])
    assert emp[-1] > 5 * emp[0]
    assert np.all(np.abs(emp - pred) < 4 * np.sqrt(pred * (1 - pred) / len(deciles[0])) + 0.005)
    p_pay = np.array([float(truth[r.impression_id]["p_pay"]) for r in rows])[clicked]
    paid = np.array([r.pay_ts is not None for r in rows])[clicked]
    assert abs(p_pay.mean() - paid.mean()) < 4 * np.sqrt(p_pay.mean() / clicked.sum())
    assert 0.075 <= p_pay.mean() <= 0.105
    paid_all = np.array([r.pay_ts is not None for r in rows])
    p_refund = np.array([float(truth[r.impression_id]["p_refund"]) for r in rows])[paid_all]
    refunded = np.array([r.refund_ts is not None for r in rows])[paid_all]
    assert abs(p_refund.mean() - refunded.mean()) < 4 * np.sqrt(p_refund.mean() / paid_all.sum())
    assert 0.11 <= p_refund.mean() <= 0.17


# ---- determinism -------------------------------------------------------------------------------

def _run(out, **kw):
    cfg = dict(out=str(out), impressions=12_000, seed=11, chunk_rows=2_500, shards=3)
    cfg.update(kw)
    run_simulation(SimConfig(**cfg), log=open(os.devnull, "w"))
    return _all_files(str(out))


def test_deterministic_across_runs_and_workers(tmp_path):
    a = _run(tmp_path / "a", workers=1)
    b = _run(tmp_path / "b", workers=2)
    c = _run(tmp_path / "c", workers=2)
    assert len([k for k in a if k.startswith("impressions/")]) == 3
    assert a == b == c
    d = _run(tmp_path / "d", workers=2, seed=12)
    assert set(d) == set(a)
    assert d["impressions/part-00000-of-00003.csv"] != a["impressions/part-00000-of-00003.csv"]
    assert d["truth/part-00000-of-00003.csv"] != a["truth/part-00000-of-00003.csv"]


def test_shards_split_the_same_rows(tmp_path):
    a = _run(tmp_path / "a", workers=2, shards=1)
    b = _run(tmp_path / "b", workers=2, shards=7)   # more shards than chunks: some empty
    lines_a = a["impressions/part-00000-of-00001.csv"].decode().splitlines()
    lines_b = []
    for s in range(7):
        lines = b[f"impressions/part-{s:05d}-of-00007.csv"].decode().splitlines()
        assert lines[0] == lines_a[0]
        lines_b.extend(lines[1:])
    assert lines_b == lines_a[1:]


def test_rerun_removes_stale_shards(tmp_path):
    _run(tmp_path / "x", shards=3)
    _run(tmp_path / "x", shards=3, format="jsonl")
    files = _run(tmp_path / "x", shards=2)
    assert sorted(k for k in files if k.startswith("impressions/")) == [
        "impressions/part-00000-of-00002.csv", "impressions/part-00001-of-00002.csv"]


# ---- formats ----------------------------------------------------------------------------------

def test_formats_round_trip_to_the_same_rows(tmp_path):
    parsed = {}
    truths = {}
    for fmt, reader in (("csv", _read_csv_dir), ("jsonl", _read_jsonl_dir),
                        ("parquet", _read_parquet_dir)):
        out = tmp_path / fmt
        _run(out, impressions=4_000, format=fmt, truth_format=fmt, workers=1)
        rows = reader(str(out / "impressions"))
        parsed[fmt] = [parse_row(r, EXTRAS) for r in rows]
        truths[fmt] = [(t["impression_id"], float(t["p_click"]), int(t["seq_same"]))
                       for t in reader(str(out / "truth"))]
        assert len(parsed[fmt]) == 4_000
    assert parsed["csv"] == parsed["jsonl"] == parsed["parquet"]
    assert truths["csv"] == truths["jsonl"] == truths["parquet"]
    # Missing events are real nulls in JSON Lines and Parquet, not NaN or "".
    first = _read_jsonl_dir(str(tmp_path / "jsonl" / "impressions"))
    assert any(r["click_ts"] is None for r in first)
    table = pq.read_table(glob.glob(str(tmp_path / "parquet" / "impressions" / "*.parquet"))[0])
    assert str(table.schema.field("click_ts").type) == "int64"
    assert table.column("click_ts").null_count > 0


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["--out", str(tmp_path), "--impressions", "0"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["--out", str(tmp_path), "--impressions", "10", "--format", "xml"])
