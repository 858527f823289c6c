"""Pairwise approximate-AUC loss and its sum with cross-entropy."""
import math

import numpy as np
import pytest

import ranking.losses  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
import tensorflow as tf  # noqa: E402

from ranking.losses import (BCEWithPairwiseAUCLoss, PairwiseAUCLoss,  # noqa: E402
                            bce_with_pairwise_auc_loss, pairwise_auc_loss)


def _softplus(x):
    return math.log1p(math.exp(x))


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _brute_force_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean()


def test_golden():
    labels = np.array([1.0, 0.0, 0.0], np.float32)
    logits = np.array([2.0, 0.0, 1.0], np.float32)
    # pairs (positive, negative): (0, 1) margin 2, (0, 2) margin 1
    np.testing.assert_allclose(pairwise_auc_loss(labels, logits).numpy(),
                               (_softplus(-2.0) + _softplus(-1.0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(pairwise_auc_loss(labels, logits, tau=0.5).numpy(),
                               (_softplus(-4.0) + _softplus(-2.0)) / 2, rtol=1e-6)
    np.testing.assert_allclose(pairwise_auc_loss(labels, logits, surrogate="sigmoid").numpy(),
                               (_sigmoid(-2.0) + _sigmoid(-1.0)) / 2, rtol=1e-6)
    # two positives, one negative; [batch, 1] shapes
    labels2 = np.array([[1.0], [1.0], [0.0]], np.float32)
    logits2 = np.array([[1.0], [-1.0], [0.0]], np.float32)
    np.testing.assert_allclose(pairwise_auc_loss(labels2, logits2).numpy(),
                               (_softplus(-1.0) + _softplus(1.0)) / 2, rtol=1e-6)


def test_single_pair_gradient():
    a, b, tau = 0.3, 1.1, 0.7
    s = tf.constant([a, b])
    with tf.GradientTape() as tape:
        tape.watch(s)
        loss = pairwise_auc_loss([1.0, 0.0], s, tau=tau)
    # d softplus(-(a - b)/tau) / da = -sigmoid(-(a - b)/tau) / tau, and the opposite for b
    g = _sigmoid(-(a - b) / tau) / tau
    np.testing.assert_allclose(tape.gradient(loss, s).numpy(), [-g, g], rtol=1e-5)


def test_sigmoid_surrogate_with_small_tau_is_one_minus_auc():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300).astype(np.float32)
    scores = (rng.standard_normal(300) + labels).astype(np.float32)
    auc = _brute_force_auc(labels, scores)
    got = pairwise_auc_loss(labels, scores, tau=1e-5, surrogate="sigmoid").numpy()
    np.testing.assert_allclose(got, 1.0 - auc, atol=1e-4)
    # the softplus surrogate upper-bounds (1 - AUC) * log 2
    assert pairwise_auc_loss(labels, scores).numpy() >= (1 - auc) * math.log(2.0)


@pytest.mark.parametrize("labels, weights", [
    ([0.0, 0.0, 0.0], None),          # no positive
    ([1.0, 1.0, 1.0], None),          # no negative
    ([1.0], None),                    # one row
    ([1.0, 0.0, 1.0], [0.0, 0.0, 0.0]),  # everything masked out
    ([1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),  # only the positive left
])
@pytest.mark.parametrize("surrogate", ["softplus", "sigmoid"])
def test_no_pair_gives_zero_without_nan(labels, weights, surrogate):
    s = tf.constant(np.linspace(-1, 1, len(labels)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(s)
        loss = pairwise_auc_loss(labels, s, surrogate=surrogate, sample_weight=weights)
        combined = bce_with_pairwise_auc_loss(labels, s, pairwise_weight=2.0,
                                              surrogate=surrogate, sample_weight=weights)
    assert loss.numpy() == 0.0
    np.testing.assert_array_equal(tape.gradient(loss, s).numpy(), np.zeros(len(labels)))
    assert np.isfinite(combined.numpy())
    assert np.all(np.isfinite(tape.gradient(combined, s).numpy()))


def test_sample_weights_weigh_pairs():
    labels = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    logits = np.array([2.0, 0.0, 1.0, -5.0], np.float32)
    # row 3 masked out: pairs (0,1) and (0,2) only
    got = pairwise_auc_loss(labels, logits, sample_weight=[1.0, 1.0, 1.0, 0.0]).numpy()
    np.testing.assert_allclose(got, (_softplus(-2.0) + _softplus(-1.0)) / 2, rtol=1e-6)
    # weight 3 on row 2: pair (0,2) weighs 3, (0,1) weighs 1
    got = pairwise_auc_loss(labels[:3], logits[:3], sample_weight=[1.0, 1.0, 3.0]).numpy()
    np.testing.assert_allclose(got, (_softplus(-2.0) + 3 * _softplus(-1.0)) / 4, rtol=1e-6)


def test_combined_loss_golden_and_bce_equivalence():
    labels = np.array([[1.0], [0.0], [0.0]], np.float32)
    logits = np.array([[2.0], [0.0], [1.0]], np.float32)
    bce = (_softplus(-2.0) + _softplus(0.0) + _softplus(1.0)) / 3
    pair = (_softplus(-2.0) + _softplus(-1.0)) / 2
    np.testing.assert_allclose(
        bce_with_pairwise_auc_loss(labels, logits, pairwise_weight=0.5).numpy(),
        bce + 0.5 * pair, rtol=1e-6)
    loss = BCEWithPairwiseAUCLoss(pairwise_weight=0.5)
    np.testing.assert_allclose(loss(labels, logits).numpy(), bce + 0.5 * pair, rtol=1e-6)
    # lambda = 0: Keras' BinaryCrossentropy(from_logits=True), sample weights included
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, [32, 1]).astype(np.float32)
    z = rng.normal(0, 2, [32, 1]).astype(np.float32)
    w = rng.integers(0, 2, [32, 1]).astype(np.float32)
    keras_bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    np.testing.assert_allclose(
        BCEWithPairwiseAUCLoss(pairwise_weight=0.0)(y_true=y, y_pred=z, sample_weight=w),
        keras_bce(y, z, sample_weight=w).numpy(), rtol=1e-6)


def test_keras_losses_config_and_training():
    loss = PairwiseAUCLoss(tau=0.5, surrogate="sigmoid", name="auc_loss")
    labels = np.array([1.0, 0.0], np.float32)
    logits = np.array([0.0, 1.0], np.float32)
    np.testing.assert_allclose(loss(labels, logits).numpy(), _sigmoid(2.0), rtol=1e-6)
    for obj in (loss, BCEWithPairwiseAUCLoss(pairwise_weight=0.3, tau=2.0)):
        clone = tf.keras.losses.deserialize(tf.keras.losses.serialize(obj))
        assert type(clone) is type(obj) and clone.get_config() == obj.get_config()
    rng = np.random.default_rng(2)
    x = rng.standard_normal([64, 4]).astype(np.float32)
    y = (x[:, :1] + 0.3 * rng.standard_normal([64, 1]) > 0).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=[4])])
    model.compile(tf.keras.optimizers.SGD(0.5), loss=BCEWithPairwiseAUCLoss(0.5))
    first = model.train_on_batch(x, y, sample_weight=np.ones(64, np.float32))
    for _ in range(10):
        last = model.train_on_batch(x, y)
    assert np.isfinite(first) and last < first


@pytest.mark.parametrize("kwargs, message", [
    (dict(tau=0.0), "tau must be a finite number > 0, got 0.0"),
    (dict(tau=float("inf")), "tau must be a finite number > 0, got inf"),
    (dict(surrogate="hinge"), "surrogate must be one of ('softplus', 'sigmoid'), got 'hinge'"),
])
def test_bad_arguments(kwargs, message):
    for fn in (lambda: pairwise_auc_loss([1.0, 0.0], [0.0, 1.0], **kwargs),
               lambda: PairwiseAUCLoss(**kwargs), lambda: BCEWithPairwiseAUCLoss(**kwargs)):
        with pytest.raises(ValueError) as err:
            fn()
        assert message in str(err.value)


def test_bad_pairwise_weight_and_lengths():
    with pytest.raises(ValueError, match="pairwise_weight must be a finite number >= 0, "
                                         "got -1"):
        BCEWithPairwiseAUCLoss(pairwise_weight=-1)
    with pytest.raises(ValueError, match="labels has 2 values, expected 3"):
        pairwise_auc_loss([1.0, 0.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="sample_weight has 1 values, expected 2"):
        bce_with_pairwise_auc_loss([1.0, 0.0], [0.0, 1.0], sample_weight=[1.0])
