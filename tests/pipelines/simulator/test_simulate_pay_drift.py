"""The simulator's conversion-rate drift (``--pay-drift SIGMA``): each domain's pay logit
follows a daily random walk recorded in simulation.json, only conversions (and so refunds)
change, the output does not depend on the workers, and SIGMA = 0 is the world as it was."""
import glob
import io
import json
import os

import numpy as np
import pyarrow.csv as pacsv
import pytest

from pipelines.simulator import SimConfig, run_simulation
from pipelines.simulator import world as W
from pipelines.simulator.simulate import pay_drift_day, pay_drift_walk_for
from tests.pipelines.simulator.cli_flags import check_nonnegative_float_flag
from tests.pipelines.simulator.test_simulate import _all_files as _files

DAYS = 7
N = 100_000   # 6,361 clicks, 521 conversions without drift (fixture runs)
CONVERSION_COLUMNS = ("pay_ts", "refund_ts")


def _run(out, **kw):
    cfg = dict(out=str(out), impressions=N, seed=5, days=DAYS, workers=1)
    cfg.update(kw)
    run_simulation(SimConfig(**cfg), log=io.StringIO())
    return str(out)


def _read(out):
    (log_path,) = glob.glob(os.path.join(out, "impressions", "*.csv"))
    (truth_path,) = glob.glob(os.path.join(out, "truth", "*.csv"))
    with open(os.path.join(out, "simulation.json")) as f:
        summary = json.load(f)
    return pacsv.read_csv(log_path).to_pydict(), pacsv.read_csv(truth_path).to_pydict(), summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("pay_drift")
    # Several chunks: each chunk must apply the same walk.
    return {sigma: _read(_run(base / f"s{sigma}", pay_drift=sigma, chunk_rows=25_000,
                              shards=1))
            for sigma in (0.0, 0.4)}


def _logit(p):
    p = np.asarray(p, dtype=float)
    return np.log(p / (1 - p))


def test_walk_starts_at_zero_and_steps_by_sigma():
    seq = lambda: np.random.SeedSequence(9, spawn_key=(3,))  # noqa: E731
    walk = W.pay_drift_walk(seq(), 2001, 0.1)
    assert walk.shape == (2001, len(W.COUNTRIES), len(W.SCENES))
    np.testing.assert_array_equal(walk[0], 0.0)
    steps = np.diff(walk, axis=0)                     # 2000 days x 12 domains
    assert abs(steps.std() - 0.1) < 0.002             # se of the sd: 0.1 / sqrt(24000) = 0.0005
    assert abs(steps.mean() + 0.1 ** 2 / 2) < 0.002   # mean -sigma^2/2 = -0.005, se 0.0006
    # Independent domains: no two domains' steps correlate beyond noise (se 1 / sqrt(2000)).
    corr = np.corrcoef(steps.reshape(2000, -1).T)
    assert np.abs(corr[~np.eye(12, dtype=bool)]).max() < 0.1
    # One path per seed: its standard normal part scales with sigma; zeros at sigma 0.
    drift = lambda sigma: sigma ** 2 / 2 * np.arange(2001)[:, None, None]  # noqa: E731
    np.testing.assert_allclose(W.pay_drift_walk(seq(), 2001, 0.3) + drift(0.3),
                               3 * (walk + drift(0.1)))
    np.testing.assert_array_equal(W.pay_drift_walk(seq(), 5, 0.0), 0.0)


def test_walk_keeps_the_expected_odds():
    # E[exp(walk[20])] = 1 for the odds; a walk without the -sigma^2/2 would give
    # exp(20 * 0.2^2 / 2) = 1.49. 300 seeds x 12 domains: exp(walk[20]) has sd
    # sqrt(e^0.8 - 1) = 1.05, the mean's se 0.018.
    last = np.concatenate([W.pay_drift_walk(np.random.SeedSequence(s), 21, 0.2)[20].ravel()
                           for s in range(300)])
    assert abs(np.exp(last).mean() - 1.0) < 0.07
    assert abs(last.std() - 0.2 * np.sqrt(20)) < 0.05            # sd 0.894, se 0.011


def test_walk_day_is_the_utc_day_clipped_to_the_window():
    cfg = SimConfig(out="x", impressions=10, days=3, start_ts=1_767_225_600)
    t = cfg.start_ts + np.array([0, 86_399, 86_400, 2 * 86_400 + 5, 3 * 86_400, 9 * 86_400])
    np.testing.assert_array_equal(pay_drift_day(cfg, t), [0, 0, 1, 2, 2, 2])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_bad_sigma_is_rejected_with_its_value(bad):
    message = rf"pay_drift must be a finite number >= 0, got {bad!r}"
    with pytest.raises(ValueError, match=message):
        W.pay_drift_walk(np.random.SeedSequence(0), 3, bad)
    with pytest.raises(ValueError, match=message):
        SimConfig(out="x", impressions=10, pay_drift=bad).validate()


def test_zero_is_byte_identical_to_a_run_without_the_option(tmp_path):
    plain = _files(_run(tmp_path / "plain", impressions=8_000))
    zero = _files(_run(tmp_path / "zero", impressions=8_000, pay_drift=0.0))
    assert plain == zero
    summary = json.loads(plain["simulation.json"])
    assert "pay_drift" not in summary["params"] and "pay_drift_walk" not in summary


def test_drift_moves_each_days_pay_logit_by_the_recorded_walk(runs):
    base_log, base_truth, _ = runs[0.0]
    log, truth, summary = runs[0.4]
    assert summary["params"]["pay_drift"] == 0.4 and summary["params"]["chunks"] >= 3
    cfg = SimConfig(out="x", impressions=N, seed=5, days=DAYS, pay_drift=0.4, chunk_rows=25_000)
    walk = pay_drift_walk_for(cfg)
    recorded = summary["pay_drift_walk"]
    assert list(recorded) == W.domain_names()
    np.testing.assert_allclose(np.array(list(recorded.values())).T,
                               walk.reshape(DAYS, -1), atol=1e-6)
    assert np.abs(walk[-1]).max() > 0.5     # the walk moved: sd 0.4 * sqrt(6) = 0.98 on day 6

    # Who sees and clicks what is untouched; only pays (and refunds) move.
    for column in base_log:
        if column not in CONVERSION_COLUMNS:
            assert log[column] == base_log[column], column
    for column in base_truth:
        if column != "p_pay":
            assert truth[column] == base_truth[column], column
    assert log["pay_ts"] != base_log["pay_ts"]

    # Per impression: logit p_pay = static logit + walk[click's (else impression's) day, domain].
    country = np.array([W.COUNTRIES.index(c) for c in log["country"]])
    scene = np.array([W.SCENES.index(s) for s in log["scene"]])
    clicked = np.array([c is not None for c in log["click_ts"]])
    event_ts = np.where(clicked, [c or 0 for c in log["click_ts"]], log["ts"])
    expected = walk[pay_drift_day(cfg, event_ts), country, scene]
    p0, p1 = np.array(base_truth["p_pay"]), np.array(truth["p_pay"])
    # p_pay is written to 6 decimals: above 0.002 the logit is off by < 5e-7 / 0.002 = 2.5e-4.
    exact = (np.minimum(p0, p1) > 0.002) & (np.maximum(p0, p1) < 0.998)
    assert exact.mean() > 0.95
    np.testing.assert_allclose((_logit(p1) - _logit(p0))[exact], expected[exact], atol=6e-4)


def test_realized_conversion_rate_follows_the_walk(runs):
    base_log, _, _ = runs[0.0]
    log, _, summary = runs[0.4]
    walk = np.array(list(summary["pay_drift_walk"].values())).T     # [day, domain]
    clicked = np.array([c is not None for c in log["click_ts"]])
    click_ts = np.array([c or 0 for c in log["click_ts"]])[clicked]
    day = (click_ts - summary["world"]["window_start_ts"]) // 86_400
    domain = np.array([W.domain_names().index(f"{c}|{s}") for c, s in
                       zip(log["country"], log["scene"])])[clicked]
    offset = walk[np.minimum(day, DAYS - 1), domain]
    paid1 = np.array([p is not None for p in log["pay_ts"]])[clicked]
    paid0 = np.array([p is not None for p in base_log["pay_ts"]])[clicked]
    # The pay draw reuses the same uniforms, so a raised logit only adds conversions. Clicks
    # whose domain-day is up by > 0.4 are expected to convert e^0.4 = 1.49x as often or more
    # (odds ~ rate at these rates), those down by > 0.4 at most 0.67x as often; the bounds
    # leave room for the binomial noise of the few conversions. Measured: 401 clicks up,
    # 31 -> 51 conversions (1.65x); 2,622 clicks down, 207 -> 117 (0.57x).
    up, down = offset > 0.4, offset < -0.4
    assert up.sum() > 300 and down.sum() > 300
    assert paid1[up].sum() > 1.25 * paid0[up].sum()
    assert paid1[down].sum() < 0.8 * paid0[down].sum()
    assert (paid1 >= paid0)[up].all() and (paid1 <= paid0)[down].all()


def test_output_does_not_depend_on_workers(tmp_path):
    kw = dict(impressions=12_000, chunk_rows=2_500, shards=3, pay_drift=0.2)
    one = _files(_run(tmp_path / "w1", workers=1, **kw))
    two = _files(_run(tmp_path / "w2", workers=2, **kw))
    assert one == two
    assert "pay_drift_walk" in json.loads(one["simulation.json"])


def test_cli_pay_drift_flag(tmp_path, capsys, monkeypatch):
    check_nonnegative_float_flag(tmp_path, capsys, monkeypatch, "--pay-drift", "pay_drift",
                                 0.0, "0.1", {"-0.5": "-0.5", "nan": "nan"})
