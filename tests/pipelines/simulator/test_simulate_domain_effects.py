"""The simulator's domain-effect scale (``--domain-effect-scale K``): the [country, scene]
coefficient tables move away from their mean over domains by the factor K, only the outcomes
change (never who sees which item when), and K = 1 is the world as it was, byte for byte."""
import glob
import io
import json
import os

import numpy as np
import pyarrow.csv as pacsv
import pytest

from pipelines.simulator import SimConfig, run_simulation
from pipelines.simulator import world as W
from tests.pipelines.simulator.cli_flags import check_nonnegative_float_flag

OUTCOMES = ("click_ts", "pay_ts", "refund_ts")


def test_domain_tables_golden():
    # CLICK_POP = scene [0.55, 0.15, 0.35] x country [1.0, 1.3, 0.8, 0.9]; its mean over the
    # 12 domains is mean(scene) * mean(country) = 0.35 * 1.0 = 0.35. At K = 3:
    #   US|home   0.55            -> 0.35 + 3 * (0.55 - 0.35)  =  0.95
    #   BR|search 0.15 * 1.3 = 0.195 -> 0.35 + 3 * (0.195 - 0.35) = -0.115 (the slope flips)
    pop = W.domain_tables(3.0).click_pop
    assert pop[0, 0] == pytest.approx(0.95)
    assert pop[1, 1] == pytest.approx(-0.115)
    # CLICK_DEVICE keeps its device axis apart: at K = 0 every domain gets the device's mean,
    #   ios: countries [0.15, -0.10, 0.0, 0.10] -> 0.0375;
    #   web: countries [-0.25, -0.30, -0.10, 0.05] -> -0.15, +0.2 in 4 of 12 cells (search)
    #        -> -0.15 + 0.2 / 3 = -0.083333.
    flat = W.domain_tables(0.0)
    np.testing.assert_allclose(flat.click_device[:, :, 0], 0.0375)
    np.testing.assert_allclose(flat.click_device[:, :, 2], -0.15 + 0.2 / 3)
    for name in ("click_base", "click_taste", "pay_price", "refund_base"):
        table = getattr(flat, name)
        np.testing.assert_allclose(table, table.mean())
    # K scales the deviations, not the mean.
    for k in (0.5, 2.0):
        scaled = W.domain_tables(k).click_price
        np.testing.assert_allclose(scaled.mean(), W.CLICK_PRICE.mean())
        np.testing.assert_allclose(scaled - scaled.mean(),
                                   k * (W.CLICK_PRICE - W.CLICK_PRICE.mean()))


def test_scale_one_is_the_module_tables_themselves():
    # Not recomputed: mean + 1 * (T - mean) differs from T in the last bits.
    tables = W.domain_tables(1.0)
    assert tables.click_base is W.CLICK_BASE and tables.click_device is W.CLICK_DEVICE
    assert tables.pay_price is W.PAY_PRICE and tables.refund_base is W.REFUND_BASE


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_scale_is_rejected_with_its_value(bad):
    message = rf"domain_effect_scale must be a finite number >= 0, got {bad!r}"
    with pytest.raises(ValueError, match=message):
        W.domain_tables(bad)
    with pytest.raises(ValueError, match=message):
        SimConfig(out="x", impressions=10, domain_effect_scale=bad).validate()


def _run(out, **kw):
    run_simulation(SimConfig(out=str(out), impressions=8_000, seed=4, workers=1, **kw),
                   log=io.StringIO())
    (log_path,) = glob.glob(os.path.join(str(out), "impressions", "*.csv"))
    (truth_path,) = glob.glob(os.path.join(str(out), "truth", "*.csv"))
    with open(os.path.join(str(out), "simulation.json")) as f:
        summary = json.load(f)
    return pacsv.read_csv(log_path).to_pydict(), pacsv.read_csv(truth_path).to_pydict(), summary


def _logit_spread_of_domain_ctr(summary) -> float:
    p = np.array([d["mean_p_click"] for d in summary["domains"].values()])
    return float(np.std(np.log(p / (1 - p))))


def test_scale_changes_outcomes_only(tmp_path):
    base_log, base_truth, base_summary = _run(tmp_path / "k1")
    explicit = _run(tmp_path / "k1_explicit", domain_effect_scale=1.0)
    assert explicit == (base_log, base_truth, base_summary)
    assert "domain_effect_scale" not in base_summary["params"]   # as before the option
    log, truth, summary = _run(tmp_path / "k3", domain_effect_scale=3.0)
    assert summary["params"]["domain_effect_scale"] == 3.0
    # Exposure (users, items, domains, times, prices) is drawn before any outcome.
    for column in base_log:
        if column not in OUTCOMES:
            assert log[column] == base_log[column], column
    assert log["click_ts"] != base_log["click_ts"]
    assert not np.allclose(truth["p_click"], base_truth["p_click"])
    # The domains' mean click rates spread further apart: the coefficients' deviations are 3x,
    # the logit of a domain's mean rate moves less (it averages sigmoids over the domain's
    # items and users): sd over domains measured 0.442 at K = 1, 0.936 at K = 3.
    ratio = _logit_spread_of_domain_ctr(summary) / _logit_spread_of_domain_ctr(base_summary)
    assert 1.8 < ratio < 3.0, ratio


def test_cli_domain_effect_scale_flag(tmp_path, capsys, monkeypatch):
    check_nonnegative_float_flag(tmp_path, capsys, monkeypatch, "--domain-effect-scale",
                                 "domain_effect_scale", 1.0, "3", {"-1": "-1.0"})
