"""Ranking-quality metrics: ROC AUC, per-user AUC (UAUC) and PR AUC (average precision).

Definitions (labels y in {0, 1}, scores s, optional sample weights w >= 0):

* ``auc`` -- ROC AUC, the weighted probability that a random positive outranks a random
  negative, ties counting one half::

      AUC = sum_{i: y_i=1} sum_{j: y_j=0} w_i w_j ([s_i > s_j] + 0.5 [s_i == s_j])
            / (sum_{i: y_i=1} w_i * sum_{j: y_j=0} w_j)

  Computed in O(n log n): sort by score, collapse tied scores into groups, and credit each
  group's positives with the negative weight strictly below it plus half of its own. NaN when
  either class has zero total weight (AUC is undefined, not 0 or 1).

* ``uauc`` -- user-level AUC: the AUC of each user's own impressions, averaged over users with
  weight = that user's number of impressions::

      UAUC = sum_u n_u AUC_u / sum_u n_u   over users u having both a click and a non-click

  Users whose impressions are all one class (only clicks or, far more often, no click) have no
  AUC and are skipped -- they count neither in the numerator nor in the weights. The number of
  users counted and skipped is returned alongside, because a UAUC over few users is noisy.
  Computed in one pass over rows sorted by (user, score), no per-user Python loop.

* ``pr_auc`` -- average precision, the area under the precision-recall curve as a step sum
  over distinct score thresholds t (descending), tied scores forming a single threshold::

      AP = sum_t (R_t - R_{t-1}) P_t

  where P_t and R_t are the (weighted) precision and recall of predicting positive for
  ``s >= t``. NaN when there is no positive weight. Matches scikit-learn's
  ``average_precision_score``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from ranking.metrics._checks import as_finite, as_labels, as_weights, check_same_length


class UAUCResult(NamedTuple):
    """Result of :func:`uauc`.

    Attributes:
        value: impression-weighted mean of per-user AUCs; NaN when no user has both classes.
        users_counted: users with both classes, the ones averaged.
        users_skipped: users whose impressions are all one class.
    """

    value: float
    users_counted: int
    users_skipped: int


def _validate(labels: Any, scores: Any, weights: Any = None):
    """Validates the common (labels, scores, weights) triple.

    Returns:
        (positive weights, negative weights, scores) as float64 arrays, one entry per row; with
        no weights every row weighs 1.
    """
    y = as_labels("labels", labels)
    s = as_finite("scores", scores)
    if weights is None:
        check_same_length(labels=y, scores=s)
        w = np.ones(len(y))
    else:
        w = as_weights("weights", weights)
        check_same_length(labels=y, scores=s, weights=w)
    return np.where(y, w, 0.0), np.where(y, 0.0, w), s


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero (metric undefined)."""
    return float(numerator / denominator) if denominator > 0 else float("nan")


def _group_sums(pos_w: np.ndarray, neg_w: np.ndarray, starts: np.ndarray):
    """Sums positive and negative weight within each run of rows beginning at ``starts``."""
    return np.add.reduceat(pos_w, starts), np.add.reduceat(neg_w, starts)


def _segment_auc_parts(pos_w: np.ndarray, neg_w: np.ndarray, tie_start: np.ndarray,
                       segment_start: np.ndarray):
    """Per-segment positive weight, negative weight and tie-aware win weight.

    Rows must be sorted by (segment, score) ascending. A segment is one user for UAUC and the
    whole data set for AUC, so both share this single implementation.

    Args:
        pos_w: weight of each row if it is a positive, else 0.
        neg_w: weight of each row if it is a negative, else 0.
        tie_start: True where a new (segment, score) group begins; True at row 0.
        segment_start: True where a new segment begins; implies ``tie_start``.

    Returns:
        (pos, neg, wins) arrays with one entry per segment, where ``wins`` is the
        pair-weighted count of positive-above-negative pairs, ties counting one half.
    """
    groups = np.flatnonzero(tie_start)
    pos_g, neg_g = _group_sums(pos_w, neg_w, groups)
    # Negative weight strictly below each tie group *within its segment*: a global exclusive
    # running sum minus its value at the segment's first group.
    neg_below = np.cumsum(neg_g) - neg_g
    segment_groups = np.flatnonzero(segment_start[groups])
    groups_per_segment = np.diff(np.append(segment_groups, len(groups)))
    neg_below -= np.repeat(neg_below[segment_groups], groups_per_segment)
    wins_g = pos_g * (neg_below + 0.5 * neg_g)
    return (np.add.reduceat(pos_g, segment_groups), np.add.reduceat(neg_g, segment_groups),
            np.add.reduceat(wins_g, segment_groups))


def _change_points(sorted_values: np.ndarray) -> np.ndarray:
    """True at row 0 and wherever a sorted array differs from the previous row."""
    change = np.empty(len(sorted_values), dtype=bool)
    change[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=change[1:])
    return change


def auc(labels: Any, scores: Any, weights: Optional[Any] = None) -> float:
    """ROC AUC with tie handling and optional sample weights, in O(n log n).

    Args:
        labels: 1-D array of 0/1 (or bool).
        scores: 1-D array of finite scores; higher means more likely positive.
        weights: optional 1-D array of non-negative sample weights.

    Returns:
        The AUC in [0, 1], or NaN when only one class has positive total weight.

    Raises:
        ValueError: on unequal lengths, labels outside {0, 1}, non-finite scores or negative
            weights; the message names the argument and a bad value.
    """
    pos_w, neg_w, s = _validate(labels, scores, weights)
    if len(s) == 0:
        return float("nan")
    order = np.argsort(s, kind="stable")
    segment_start = np.zeros(len(s), dtype=bool)
    segment_start[0] = True
    pos, neg, wins = _segment_auc_parts(pos_w[order], neg_w[order], _change_points(s[order]),
                                        segment_start)
    return _ratio(wins[0], pos[0] * neg[0])


def uauc(labels: Any, scores: Any, users: Any) -> UAUCResult:
    """User-level AUC: per-user AUC averaged with weights = impressions of that user.

    Users whose impressions are all one class have no AUC and are skipped (excluded from both
    the average and its weights); their number is reported in ``users_skipped``.

    Args:
        labels: 1-D array of 0/1 (or bool).
        scores: 1-D array of finite scores.
        users: 1-D array of user ids (any sortable dtype: ints, strings).

    Returns:
        UAUCResult(value, users_counted, users_skipped); value is NaN when no user has both
        classes.

    Raises:
        ValueError: on unequal lengths, labels outside {0, 1} or non-finite scores.
    """
    pos_w, neg_w, s = _validate(labels, scores)
    users = np.asarray(users)
    if users.ndim != 1:
        raise ValueError(f"users must be 1-D, got shape {users.shape}")
    check_same_length(labels=pos_w, users=users)
    if len(s) == 0:
        return UAUCResult(float("nan"), 0, 0)
    # Dense integer codes make the two-key sort cheap whatever the id dtype.
    user_codes = np.unique(users, return_inverse=True)[1].reshape(-1)
    order = np.lexsort((s, user_codes))
    sorted_users, sorted_scores = user_codes[order], s[order]
    segment_start = _change_points(sorted_users)
    tie_start = segment_start | _change_points(sorted_scores)
    pos, neg, wins = _segment_auc_parts(pos_w[order], neg_w[order], tie_start, segment_start)
    counted = (pos > 0) & (neg > 0)
    impressions = (pos + neg)[counted]
    per_user_auc = wins[counted] / (pos[counted] * neg[counted])
    value = _ratio(np.dot(impressions, per_user_auc), impressions.sum())
    n_counted = int(counted.sum())
    return UAUCResult(value, n_counted, len(pos) - n_counted)


def pr_auc(labels: Any, scores: Any, weights: Optional[Any] = None) -> float:
    """Average precision (area under the precision-recall curve), tie-aware.

    Args:
        labels: 1-D array of 0/1 (or bool).
        scores: 1-D array of finite scores.
        weights: optional 1-D array of non-negative sample weights.

    Returns:
        Average precision in [0, 1], or NaN when there is no positive weight.

    Raises:
        ValueError: on unequal lengths, labels outside {0, 1}, non-finite scores or negative
            weights.
    """
    pos_w, neg_w, s = _validate(labels, scores, weights)
    total_pos = pos_w.sum()
    if total_pos <= 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    pos_g, neg_g = _group_sums(pos_w[order], neg_w[order],
                               np.flatnonzero(_change_points(s[order])))
    true_pos = np.cumsum(pos_g)
    predicted_pos = true_pos + np.cumsum(neg_g)
    # A threshold whose groups so far weigh nothing adds no recall, so its precision is moot.
    precision = np.divide(true_pos, predicted_pos, out=np.zeros_like(true_pos),
                          where=predicted_pos > 0)
    return float(np.dot(pos_g, precision) / total_pos)
