"""Tests for ranking.metrics.calibration."""
import math

import numpy as np
import pytest

from ranking.metrics.calibration import calibration_by_bucket, log_loss, pcoc


def test_pcoc_is_predicted_over_observed_positives():
    # Predicted clicks 0.2 + 0.5 + 0.3 + 0.6 = 1.6 over 2 observed -> 0.8.
    assert pcoc([0, 1, 0, 1], [0.2, 0.5, 0.3, 0.6]) == pytest.approx(0.8, abs=1e-12)
    # A constant prediction at the base rate is calibrated even though it ranks nothing.
    assert pcoc([0, 0, 0, 1], [0.25] * 4) == 1.0


def test_pcoc_is_nan_without_positives():
    assert math.isnan(pcoc([0, 0], [0.1, 0.2]))


def test_log_loss_hand_computed():
    # -(ln 0.8 + ln(1 - 0.4)) / 2 = (0.2231435513 + 0.5108256238) / 2 = 0.36698458755
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(0.3669845875, abs=1e-9)


def test_log_loss_clips_confident_misses():
    # p = 0 for a positive is clipped to eps: loss -ln(1e-7) = 16.118..., not infinity.
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7), abs=1e-9)
    assert log_loss([0], [1.0], eps=1e-3) == pytest.approx(-math.log(1e-3), abs=1e-9)
    assert math.isnan(log_loss([], []))


def test_calibration_by_bucket_equal_count_buckets():
    rng = np.random.default_rng(0)
    order = rng.permutation(6)
    labels = np.array([0, 0, 1, 0, 1, 1])[order]
    predictions = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])[order]
    buckets = calibration_by_bucket(labels, predictions, n_buckets=3)
    # Buckets {.1,.2}: no positive; {.3,.4}: 0.7 predicted / 1 observed;
    # {.5,.6}: 1.1 predicted / 2 observed.
    assert [b["count"] for b in buckets] == [2, 2, 2]
    assert [b["min_prediction"] for b in buckets] == [0.1, 0.3, 0.5]
    assert [b["max_prediction"] for b in buckets] == [0.2, 0.4, 0.6]
    assert [b["observed_rate"] for b in buckets] == [0.0, 0.5, 1.0]
    assert buckets[1]["mean_prediction"] == pytest.approx(0.35, abs=1e-12)
    assert math.isnan(buckets[0]["pcoc"])
    assert buckets[1]["pcoc"] == pytest.approx(0.7, abs=1e-12)
    assert buckets[2]["pcoc"] == pytest.approx(0.55, abs=1e-12)


def test_calibration_by_bucket_omits_empty_buckets():
    assert [b["bucket"] for b in calibration_by_bucket([0, 1], [0.2, 0.4], n_buckets=4)] == [0, 2]
    assert calibration_by_bucket([], [], n_buckets=4) == []


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 1\]; found 1.5 at index 1"):
        pcoc([0, 1], [0.2, 1.5])
    with pytest.raises(ValueError, match="predictions has length 1 but labels has length 2"):
        log_loss([0, 1], [0.2])
    with pytest.raises(ValueError, match="labels must contain only 0 and 1; found -1 at index 0"):
        log_loss([-1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="eps must lie in"):
        log_loss([0], [0.2], eps=0)
    with pytest.raises(ValueError, match="n_buckets must be >= 1, got 0"):
        calibration_by_bucket([0], [0.2], n_buckets=0)
