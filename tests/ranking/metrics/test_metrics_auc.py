"""Tests for ranking.metrics.auc (file named test_metrics_* because tests/ has no __init__.py
and pytest needs unique basenames)."""
import math

import numpy as np
import pytest

from ranking.metrics.auc import UAUCResult, auc, pr_auc, uauc


def brute_force_auc(labels, scores, weights=None):
    """O(n^2) reference straight from the definition."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    pos, neg = labels == 1, labels == 0
    diff = scores[pos][:, None] - scores[neg][None, :]
    credit = (diff > 0) + 0.5 * (diff == 0)
    pair_weight = weights[pos][:, None] * weights[neg][None, :]
    return (credit * pair_weight).sum() / pair_weight.sum()


def test_auc_hand_computed():
    # Pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4.
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_auc_ties_get_half_credit():
    assert auc([0, 1], [0.5, 0.5]) == 0.5
    # Pos 0.5 ties neg 0.5 (1/2) and beats neg 0.2 (1) -> 1.5/2.
    assert auc([1, 0, 0], [0.5, 0.5, 0.2]) == 0.75


def test_auc_perfect_and_inverted():
    assert auc([0, 0, 1], [0.1, 0.2, 0.3]) == 1.0
    assert auc([1, 1, 0], [0.1, 0.2, 0.3]) == 0.0


def test_auc_is_nan_with_one_class_or_no_rows():
    assert math.isnan(auc([1, 1], [0.2, 0.3]))
    assert math.isnan(auc([0, 0], [0.2, 0.3]))
    assert math.isnan(auc([], []))
    # Zero total weight on the positives leaves AUC undefined too.
    assert math.isnan(auc([1, 0], [0.2, 0.3], weights=[0, 1]))


def test_auc_accepts_bool_labels_and_keras_shaped_scores():
    assert auc(np.array([False, True]), np.array([[0.1], [0.9]])) == 1.0


def test_weighted_auc_equals_auc_with_duplicated_rows():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.3, 0.3, 0.9, 0.5, 0.1, 0.2])
    weights = np.array([2, 1, 3, 1, 2, 1])
    duplicated = auc(np.repeat(labels, weights), np.repeat(scores, weights))
    assert auc(labels, scores, weights) == pytest.approx(duplicated, abs=1e-12)
    # By hand: positive weight 1+1+2 = 4, negative 2+3+1 = 6, 24 weighted pairs. Wins:
    # .3 (w1) ties .3 (w2) -> 1 and beats .2 (w1) -> 1; .5 (w1) beats .3 and .2 -> 3;
    # .1 (w2) wins nothing -> 5/24.
    assert duplicated == pytest.approx(5 / 24, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_reference_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 300
    labels = rng.integers(0, 2, n)
    scores = rng.integers(0, 20, n) / 20.0  # only 20 distinct values, so ties are common
    weights = rng.random(n)
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)
    assert auc(labels, scores, weights) == pytest.approx(
        brute_force_auc(labels, scores, weights), abs=1e-12)


def test_uauc_hand_computed_with_single_class_user_skipped():
    # user a: labels 1,0,0 scores .9,.5,.95 -> pos .9 beats .5, loses to .95 -> AUC 1/2, n=3
    # user b: labels 0,1,1,0 scores .2,.6,.2,.1 -> .6 beats .2 and .1 (2); .2 ties .2 (1/2)
    #         and beats .1 (1) -> 3.5/4 = 7/8, n=4
    # user c: labels 0,0 -> single class, skipped
    # UAUC = (3 * 1/2 + 4 * 7/8) / (3 + 4) = 5/7
    users = ["a", "b", "c", "a", "b", "b", "c", "a", "b"]
    labels = [1, 0, 0, 0, 1, 1, 0, 0, 0]
    scores = [0.9, 0.2, 0.3, 0.5, 0.6, 0.2, 0.7, 0.95, 0.1]
    result = uauc(labels, scores, users)
    assert isinstance(result, UAUCResult)
    assert result.value == pytest.approx(5 / 7, abs=1e-12)
    assert (result.users_counted, result.users_skipped) == (2, 1)


def test_uauc_matches_per_user_loop_on_random_data():
    rng = np.random.default_rng(7)
    n = 3000
    users = rng.integers(0, 100, n)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = rng.integers(0, 10, n) / 10.0
    numerator = weight = skipped = 0
    for user in np.unique(users):
        rows = users == user
        if labels[rows].min() == labels[rows].max():
            skipped += 1
            continue
        numerator += rows.sum() * brute_force_auc(labels[rows], scores[rows])
        weight += rows.sum()
    result = uauc(labels, scores, users)
    assert result.value == pytest.approx(numerator / weight, abs=1e-12)
    assert result.users_skipped == skipped
    assert result.users_counted == 100 - skipped


def test_uauc_is_nan_when_every_user_is_single_class():
    assert tuple(uauc([1, 0], [0.3, 0.4], [1, 2]))[1:] == (0, 2)
    assert math.isnan(uauc([1, 0], [0.3, 0.4], [1, 2]).value)
    result = uauc([], [], [])
    assert math.isnan(result.value) and result[1:] == (0, 0)


def test_pr_auc_hand_computed():
    # Descending: .9 pos (P=1, R=1/2), .8 neg, .7 pos (P=2/3, R=1) -> 1/2*1 + 1/2*2/3 = 5/6.
    assert pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(5 / 6, abs=1e-12)


def test_pr_auc_treats_tied_scores_as_one_threshold():
    # Threshold .5 takes both tied rows: P=1/2, R=1/2; then .2: P=2/3, R=1 -> 1/4 + 1/3.
    assert pr_auc([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(7 / 12, abs=1e-12)
    assert math.isnan(pr_auc([0, 0], [0.5, 0.2]))


def test_errors_name_the_argument_and_a_bad_value():
    with pytest.raises(ValueError, match="scores has length 3 but labels has length 4"):
        auc([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"labels must contain only 0 and 1; found 2 at index 1"):
        auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"labels must contain only 0 and 1; found 'x' at index 1"):
        auc(np.array([0, "x"], dtype=object), [0.1, 0.2])
    with pytest.raises(ValueError, match=r"labels must contain only 0 and 1; found '1' at index 0"):
        auc(np.array(["1", "0"]), [0.1, 0.2])  # strings are not labels, even "1"
    with pytest.raises(ValueError, match="scores must be finite; found nan at index 2"):
        auc([0, 1, 0], [0.1, 0.2, float("nan")])
    with pytest.raises(ValueError, match="scores must be numeric; found 'high' at index 1"):
        auc([0, 1], np.array([0.5, "high"], dtype=object))
    with pytest.raises(ValueError, match="weights must be non-negative; found -1.0 at index 0"):
        auc([0, 1], [0.1, 0.2], weights=[-1.0, 1.0])
    with pytest.raises(ValueError, match="users has length 1 but labels has length 2"):
        uauc([0, 1], [0.1, 0.2], ["u"])
    with pytest.raises(ValueError, match=r"scores must be 1-D \(or shape \(n, 1\)\)"):
        pr_auc([0, 1], [[0.1, 0.2], [0.3, 0.4]])
