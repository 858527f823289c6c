"""Logit-offset calibration: hand-computed roots, and PCOC 1 on the fitted data."""
import dataclasses
import math

import numpy as np
import pytest

from ranking.calibration import calibrate, fit_logit_offset
from ranking.config import ConfigError
from ranking.data.input import make_dataset
from ranking.data.schema import load_schema
from ranking.metrics import auc
from ranking.train import build_model, sample_files


def test_offset_roots_by_hand():
    # sigmoid(0 + b) * 2 == 1 -> b = 0
    assert fit_logit_offset([0.0, 0.0], [1, 0]) == pytest.approx(0.0, abs=1e-12)
    # 4 sigmoid(b) == 1 -> sigmoid(b) = 1/4 -> b = log(1/3)
    assert fit_logit_offset([0.0] * 4, [1, 0, 0, 0]) == pytest.approx(math.log(1 / 3))
    # logits 2 everywhere, rate 1/2 -> b = -2; weights drop the last two rows
    assert fit_logit_offset([2.0, 2.0, 9.0, 9.0], [1, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(
        -2.0)
    with pytest.raises(ValueError, match="both classes"):
        fit_logit_offset([0.1, 0.2], [0, 0])


def test_calibrate_sets_pcoc_to_one_and_keeps_auc(simulated_samples, small_experiment):
    config = small_experiment()
    config = dataclasses.replace(config, training=dataclasses.replace(
        config.training, calibrate=["ctr"]))
    schema = load_schema(simulated_samples)
    files = sample_files(simulated_samples)
    model = build_model(config, schema)
    ds = make_dataset(files, schema, config, training=False, batch_size=2000)
    model.fit(make_dataset(files, schema, config, training=True), epochs=1, verbose=0)

    def predictions():
        preds, labels = [], []
        for features, y in ds:
            preds.append(model(features)["ctr"].numpy())
            labels.append(y["click"].numpy())
        return np.concatenate(preds), np.concatenate(labels)

    before, labels = predictions()
    offsets = calibrate(model, ds, config)
    after, _ = predictions()
    assert set(offsets) == {"ctr"} and offsets["ctr"] != 0.0
    assert after.sum() / labels.sum() == pytest.approx(1.0, abs=1e-4)
    # a shift keeps the order; float32 sigmoid rounding may merge a few near-ties
    assert auc(labels, after) == pytest.approx(auc(labels, before), abs=1e-5)


def test_calibrate_config_names_a_tower_task(small_experiment):
    config = small_experiment()
    with pytest.raises(ConfigError, match="'ctcvr' is not a task with its own tower logit"):
        dataclasses.replace(config, training=dataclasses.replace(
            config.training, calibrate=["ctcvr"]))
