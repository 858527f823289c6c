"""The oracle-gap bound: the rebuilt true logit and the MAP estimates it rests on."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import achievable_auc as A  # noqa: E402


def _stationarity(group, offset, labels, value, prior_mean, prior_sd):
    p = 1 / (1 + np.exp(-(offset + value[group])))
    return (np.bincount(group, labels - p, len(value))
            - (value - prior_mean) / prior_sd ** 2)


def test_newton_finds_the_map_of_each_group():
    """Group 0: no rows -> the prior mean. Group 1: clicks [1, 0], offset 0, prior N(0, 1):
    1 - 2 s(b) - b = 0 at b = 0. Group 2: clicks [1, 1]: 2 (1 - s(b)) = b at b = 0.6749."""
    group = np.array([1, 1, 2, 2])
    labels = np.array([1.0, 0.0, 1.0, 1.0])
    offset = np.zeros(4)
    prior = np.array([0.3, 0.0, 0.0])
    value = A._newton(group, 3, offset, labels, prior.copy(), prior, 1.0, steps=20)
    assert value == pytest.approx([0.3, 0.0, 0.6749], abs=1e-4)
    assert np.abs(_stationarity(group, offset, labels, value, prior, 1.0)).max() < 1e-9


def test_map_latents_solve_the_joint_problem():
    rng = np.random.default_rng(0)
    n, users, items = 4000, 50, 80
    d = {"user": rng.integers(0, users, n), "item": rng.integers(0, items, n),
         "tier": rng.integers(0, 3, n), "tastes": np.zeros((users, 3)),
         "world": type("World", (), {"n_items": items})}
    d["tier"] = np.repeat(rng.integers(0, 3, users), 1)[d["user"]]  # one tier per user
    x = rng.normal(-2.0, 1.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-x - 0.5))).astype(float)
    bias, quality, prior = A.map_latents(d, x, np.arange(n), labels)
    assert np.abs(_stationarity(d["user"], x + quality[d["item"]], labels, bias, prior,
                                A.PRIOR_SD_USER)).max() < 1e-6
    assert np.abs(_stationarity(d["item"], x + bias[d["user"]], labels, quality, 0.0,
                                A.PRIOR_SD_ITEM)).max() < 1e-6
    assert 0.2 < bias.mean() < 0.8  # the +0.5 shift shows up in the user biases


def test_rebuilt_logit_matches_the_truth_file(simulated_samples):
    sim = os.path.join(os.path.dirname(simulated_samples), "sim")
    result = A.bound(A.load(sim))
    # The user bias read off as the residual is constant within each user up to the truth
    # file's 6-decimal rounding of p_click.
    assert result["max_rebuild_error"] < 1e-3
    assert result["test_rows"] > 500 and result["test_clicks"] > 20
    assert set(result["auc"]) >= {"oracle (true p_click)",
                                  "MAP user bias and item quality (days before the test day)"}
