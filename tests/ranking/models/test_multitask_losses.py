"""MultiTaskRanker's loss options: focal and BCE + pairwise-AUC task losses, the masked-mean
normalization of masked tasks, and uncertainty task weighting, each against the formula
computed by hand (numpy) from the model's logits."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from ranking.config import FocalLossConfig, PairwiseAUCLossConfig, TaskConfig, TrainingConfig
from ranking.data.input import make_dataset
from ranking.data.schema import load_schema
from ranking.losses import masked_mean
from ranking.models.multitask import MultiTaskRanker, masked_mean_weights
from ranking.train import sample_files

ROWS = 512


@pytest.fixture(scope="module")
def batch(simulated_samples, small_experiment):
    config = small_experiment("mmoe_esmm")
    schema = load_schema(simulated_samples)
    ds = make_dataset(sample_files(simulated_samples), schema, config, training=False,
                      batch_size=ROWS)
    features, labels = next(iter(ds))
    assert labels["click"].numpy().sum() >= 5  # pairs and masked rows to test on
    return features, {k: v.numpy() for k, v in labels.items()}, schema


def _model(small_experiment, schema, tasks, **training):
    config = small_experiment("mmoe_esmm")
    config = dataclasses.replace(config, tasks=tasks,
                                 training=dataclasses.replace(config.training, **training))
    tf.keras.utils.set_random_seed(1)
    return MultiTaskRanker(config, schema)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _bce(y, z):
    return -(y * np.log(_sigmoid(z)) + (1 - y) * np.log(1 - _sigmoid(z)))


def _logits(model, features):
    return {k: v.numpy().astype(np.float64) for k, v in model.logits(features).items()}


def test_focal_loss_task(batch, small_experiment):
    """FL = -alpha_t (1 - p_t)^gamma log p_t, averaged over the batch."""
    features, labels, schema = batch
    model = _model(small_experiment, schema, [
        TaskConfig("ctr", "click", loss="focal", focal=FocalLossConfig(gamma=2.0, alpha=0.25)),
        TaskConfig("ctcvr", "conversion")])
    z = _logits(model, features)
    y = labels["click"]
    p = _sigmoid(z["ctr"])
    p_t = np.where(y == 1, p, 1 - p)
    alpha_t = np.where(y == 1, 0.25, 0.75)
    focal = np.mean(-alpha_t * (1 - p_t) ** 2 * np.log(p_t))
    expected = focal + np.mean(_bce(labels["conversion"], z["ctcvr"]))
    assert float(model.compute_loss((features, labels))) == pytest.approx(expected, rel=1e-5)
    assert focal < np.mean(_bce(y, z["ctr"]))  # easy negatives are down-weighted


def test_bce_with_pairwise_auc_task(batch, small_experiment):
    """L = mean BCE + lambda * mean over (positive i, negative j) of softplus(-(z_i - z_j)/tau)."""
    features, labels, schema = batch
    model = _model(small_experiment, schema, [
        TaskConfig("ctr", "click", loss="bce_pairwise_auc",
                   pairwise_auc=PairwiseAUCLossConfig(weight=0.5, tau=2.0)),
        TaskConfig("ctcvr", "conversion", weight=0.0)])
    z = _logits(model, features)["ctr"]
    y = labels["click"]
    pos, neg = z[y == 1], z[y == 0]
    pairwise = np.mean(np.log1p(np.exp(-(pos[:, None] - neg[None, :]) / 2.0)))
    expected = np.mean(_bce(y, z)) + 0.5 * pairwise
    assert float(model.compute_loss((features, labels))) == pytest.approx(expected, rel=1e-5)


def test_masked_normalization_is_the_mean_over_masked_rows(batch, small_experiment):
    """cvr on clicks: ``masked`` divides by the clicked rows, ``batch`` by the batch size."""
    features, labels, schema = batch
    tasks = [TaskConfig("ctr", "click", weight=0.0), TaskConfig("ctcvr", "conversion", weight=0.0)]
    masked = _model(small_experiment, schema, tasks + [TaskConfig(
        "cvr", "conversion", mask_label="click", mask_normalization="masked")])
    by_batch = _model(small_experiment, schema, tasks + [TaskConfig(
        "cvr", "conversion", mask_label="click")])
    click = labels["click"]
    losses = _bce(labels["conversion"], _logits(masked, features)["cvr"])
    expected = np.sum(click * losses) / np.sum(click)
    assert float(masked.compute_loss((features, labels))) == pytest.approx(expected, rel=1e-5)
    assert float(masked_mean(losses, click)) == pytest.approx(expected, rel=1e-5)
    losses = _bce(labels["conversion"], _logits(by_batch, features)["cvr"])
    assert float(by_batch.compute_loss((features, labels))) == pytest.approx(
        np.sum(click * losses) / ROWS, rel=1e-5)

    # A batch without a click: the masked mean is 0, not NaN.
    rows = np.flatnonzero(click == 0)[:64]
    no_click = ({k: tf.gather(v, rows) for k, v in features.items()},
                {k: v[rows] for k, v in labels.items()})
    assert float(masked.compute_loss(no_click)) == 0.0


def test_masked_mean_weights_golden():
    # B = 4, two rows in: weights 4/2 = 2 on them, so (1/B) sum w l = (l_0 + l_2) / 2.
    np.testing.assert_array_equal(masked_mean_weights(tf.constant([[1.0], [0.0], [1.0], [0.0]])),
                                  [[2.0], [0.0], [2.0], [0.0]])
    np.testing.assert_array_equal(masked_mean_weights(tf.zeros([3, 1])), np.zeros([3, 1]))


def test_uncertainty_weighting(batch, small_experiment):
    """total = sum_t exp(-s_t) L_t + s_t; d total / d s_t = 1 - exp(-s_t) L_t."""
    features, labels, schema = batch
    model = _model(small_experiment, schema,
                   [TaskConfig("ctr", "click"), TaskConfig("ctcvr", "conversion")],
                   task_weighting="uncertainty")
    s = np.array([0.5, -0.3])
    model.task_weighting.log_variances.assign(s)
    assert any(v is model.task_weighting.log_variances for v in model.trainable_variables)
    z = _logits(model, features)
    task_losses = np.array([np.mean(_bce(labels["click"], z["ctr"])),
                            np.mean(_bce(labels["conversion"], z["ctcvr"]))])
    with tf.GradientTape() as tape:
        total = model.compute_loss((features, labels))
    assert float(total) == pytest.approx(np.sum(np.exp(-s) * task_losses + s), rel=1e-5)
    grad = tape.gradient(total, model.task_weighting.log_variances).numpy()
    np.testing.assert_allclose(grad, 1 - np.exp(-s) * task_losses, rtol=1e-4)
    assert TrainingConfig().task_weighting == "fixed"
