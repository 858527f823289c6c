"""Calibration metrics: PCOC, log loss and calibration by prediction bucket.

Definitions (labels y in {0, 1}, predicted probabilities p in [0, 1], n rows):

* ``pcoc`` -- Predicted Click Over Click: predicted clicks over observed clicks, i.e. the mean
  predicted rate over the observed rate::

      PCOC = sum_i p_i / sum_i y_i

  1.0 is calibrated on aggregate; > 1 over-predicts, < 1 under-predicts. NaN when there is no
  positive (the observed rate is 0 and the ratio is undefined). It says nothing about ranking:
  a constant prediction equal to the base rate has PCOC 1.

* ``log_loss`` -- mean binary cross-entropy with predictions clipped to [eps, 1 - eps] so a
  confident miss costs a large but finite amount::

      LogLoss = -(1/n) sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)]

  NaN on empty input.

* ``calibration_by_bucket`` -- rows split into equal-count buckets by ascending prediction;
  per bucket the mean prediction, observed rate and PCOC, to see *where* a model is
  miscalibrated when the overall PCOC hides it.
"""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from ranking.metrics._checks import as_labels, as_probabilities, check_same_length


def _validate(labels: Any, predictions: Any):
    """Validates (labels, predictions); returns them as (bool, float64) arrays."""
    y = as_labels("labels", labels)
    p = as_probabilities("predictions", predictions)
    check_same_length(labels=y, predictions=p)
    return y, p


def _pcoc_of(predicted: float, observed: float) -> float:
    """PCOC from the two sums, NaN without observed positives."""
    return float(predicted / observed) if observed > 0 else float("nan")


def pcoc(labels: Any, predictions: Any) -> float:
    """Predicted over observed positives: sum(predictions) / sum(labels).

    Args:
        labels: 1-D array of 0/1 (or bool).
        predictions: 1-D array of probabilities in [0, 1].

    Returns:
        PCOC (1.0 is calibrated), or NaN when there are no positives.

    Raises:
        ValueError: on unequal lengths, labels outside {0, 1} or predictions outside [0, 1].
    """
    y, p = _validate(labels, predictions)
    return _pcoc_of(p.sum(), np.count_nonzero(y))


def log_loss(labels: Any, predictions: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (natural log), predictions clipped to [eps, 1 - eps].

    Args:
        labels: 1-D array of 0/1 (or bool).
        predictions: 1-D array of probabilities in [0, 1].
        eps: clipping margin, in (0, 0.5).

    Returns:
        The mean log loss, or NaN on empty input.

    Raises:
        ValueError: on unequal lengths, labels outside {0, 1}, predictions outside [0, 1] or
            eps outside (0, 0.5).
    """
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps!r}")
    y, p = _validate(labels, predictions)
    if len(y) == 0:
        return float("nan")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def calibration_by_bucket(labels: Any, predictions: Any,
                          n_buckets: int = 10) -> List[Dict[str, float]]:
    """Calibration per equal-count bucket of ascending prediction.

    Rows are ranked by prediction and bucket ``k`` holds ranks ``[k n / B, (k + 1) n / B)``;
    tied predictions may straddle two buckets. Buckets that would be empty (n < B) are
    omitted.

    Args:
        labels: 1-D array of 0/1 (or bool).
        predictions: 1-D array of probabilities in [0, 1].
        n_buckets: number of buckets B, >= 1.

    Returns:
        One dict per non-empty bucket, lowest predictions first, with keys ``bucket``,
        ``count``, ``min_prediction``, ``max_prediction``, ``mean_prediction``,
        ``observed_rate`` and ``pcoc`` (NaN without positives).

    Raises:
        ValueError: on bad labels/predictions or ``n_buckets < 1``.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets!r}")
    y, p = _validate(labels, predictions)
    if len(p) == 0:
        return []
    order = np.argsort(p, kind="stable")
    sorted_p, sorted_y = p[order], y[order].astype(np.float64)
    rank_bucket = np.arange(len(p)) * n_buckets // len(p)
    # Ranks are sorted, so each bucket is one contiguous run of the sorted arrays.
    buckets, starts = np.unique(rank_bucket, return_index=True)
    ends = np.append(starts[1:], len(p))
    count = ends - starts
    pred_sum = np.add.reduceat(sorted_p, starts)
    pos_sum = np.add.reduceat(sorted_y, starts)
    return [{
        "bucket": int(buckets[k]),
        "count": int(count[k]),
        "min_prediction": float(sorted_p[starts[k]]),
        "max_prediction": float(sorted_p[ends[k] - 1]),
        "mean_prediction": float(pred_sum[k] / count[k]),
        "observed_rate": float(pos_sum[k] / count[k]),
        "pcoc": _pcoc_of(pred_sum[k], pos_sum[k]),
    } for k in range(len(buckets))]
