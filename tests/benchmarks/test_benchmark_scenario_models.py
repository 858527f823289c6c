"""The scenario-model benchmark's arithmetic: the AUC standard error, the PCOC against the
truth, the per-domain summaries and the verdict against shared-bottom."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import scenario_models as sm  # noqa: E402


def test_hanley_mcneil_se_golden():
    # a = 0.8, 10 positives, 20 negatives: q1 = 0.8 / 1.2 = 0.666667, q2 = 1.28 / 1.8 = 0.711111,
    # var = (0.16 + 9 * 0.026667 + 19 * 0.071111) / 200 = 1.751111 / 200 = 0.0087556,
    # se = 0.093571.
    assert sm.hanley_mcneil_se(0.8, 10, 20) == pytest.approx(0.093571, abs=1e-6)
    assert sm.hanley_mcneil_se(0.8, 0, 20) != sm.hanley_mcneil_se(0.8, 0, 20)  # NaN: no pairs


def test_truth_pcoc_divides_out_the_label_noise():
    # Model PCOC = sum(pred) / clicks, oracle PCOC = sum(p_click) / clicks on the same rows, so
    # their ratio is sum(pred) / sum(p_click): 1.2 / 0.8 = 1.5, 0.9 / 1.0 = 0.9.
    data = {"A": {"oracle_pcoc": 0.8}, "B": {"oracle_pcoc": 1.0}, "C": {"oracle_pcoc": 1.1}}
    got = sm.truth_pcoc({"A": 1.2, "B": 0.9, "C": None}, data)
    assert got["A"] == pytest.approx(1.5) and got["B"] == pytest.approx(0.9)
    assert got["C"] is None


def test_summary_figures_skip_undefined_domains():
    m = {"ctr_auc_by_domain": {"A": 0.7, "B": 0.8, "C": None},
         "ctr_gap_by_domain": {"A": 0.1, "B": 0.05, "C": None},
         "cvr_auc_by_domain": {"A": 0.5, "B": 0.7, "C": None},
         "ctcvr_auc_by_domain": {"A": 0.6, "B": None, "C": 0.9},
         "ctr_pcoc_by_domain": {"A": 1.3, "B": 0.6, "C": None},
         "ctr_truth_pcoc_by_domain": {"A": 1.1, "B": 0.95, "C": None}}
    s = sm.summary_figures(m)
    assert s["ctr_domain_auc_mean"] == pytest.approx(0.75)
    assert s["ctr_domain_gap_mean"] == pytest.approx(0.075)
    assert s["cvr_domain_auc_mean"] == pytest.approx(0.6)
    assert s["ctcvr_domain_auc_mean"] == pytest.approx(0.75)
    assert s["ctr_pcoc_spread"] == pytest.approx(0.4)        # |0.6 - 1| beats |1.3 - 1|
    assert s["ctr_truth_pcoc_spread"] == pytest.approx(0.1)
    assert s["ctr_pcoc_mean_dev"] == pytest.approx(0.35)    # (0.3 + 0.4) / 2
    assert s["ctr_truth_pcoc_mean_dev"] == pytest.approx(0.075)


def _runs(auc, spread, truth, mean_dev, truth_mean_dev):
    return [{"ctr_domain_auc_mean": a, "ctr_pcoc_spread": s, "ctr_truth_pcoc_spread": t,
             "ctr_pcoc_mean_dev": m, "ctr_truth_pcoc_mean_dev": tm}
            for a, s, t, m, tm in zip(auc, spread, truth, mean_dev, truth_mean_dev)]


def test_verdict_calls_a_change_only_beyond_the_seed_range():
    base = _runs([0.79, 0.80], [0.40, 0.44], [0.36, 0.38], [0.20, 0.22], [0.15, 0.16])
    model = _runs([0.81, 0.82], [0.70, 0.60], [0.37, 0.39], [0.10, 0.12], [0.15, 0.17])
    # AUC +0.02 > seed range 0.01; PCOC spread +0.23 > 0.10 (worse: lower is better);
    # vs truth +0.01 <= 0.02; mean |PCOC-1| -0.10 < -0.02 (better); vs truth +0.005 <= 0.02.
    assert sm.verdict(base, model) == (
        "per-domain AUC mean +0.0200 better; PCOC spread +0.2300 worse; "
        "vs truth +0.0100 within seed noise 0.0200; mean |PCOC-1| -0.1000 better; "
        "vs truth +0.0050 within seed noise 0.0200")
    one = sm.verdict(base[:1], model[:1])
    assert one.startswith("per-domain AUC mean +0.0200 better (1 seed: no noise estimate)")
