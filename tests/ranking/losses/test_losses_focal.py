"""Binary focal loss from logits (file named test_losses_*: tests/ has no __init__.py)."""
import math

import numpy as np
import pytest

import ranking.losses  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
import tensorflow as tf  # noqa: E402

from ranking.losses import BinaryFocalLoss, binary_focal_loss  # noqa: E402


def _focal64(labels, logits, gamma, alpha):
    """Textbook -alpha_t (1 - p_t)^gamma log p_t, float64 (moderate logits only)."""
    y, z = np.float64(labels), np.float64(logits)
    p = 1 / (1 + np.exp(-z))
    p_t = np.where(y == 1, p, 1 - p)
    a_t = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    return -a_t * (1 - p_t) ** gamma * np.log(p_t)


def test_golden():
    labels = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    logits = np.array([0.0, math.log(3.0), math.log(3.0), -math.log(3.0)], np.float32)
    got = binary_focal_loss(labels, logits, gamma=2.0, alpha=0.25).numpy()
    want = [
        0.25 * 0.5 ** 2 * math.log(2.0),      # y=1, p=1/2: p_t=1/2, alpha_t=1/4
        0.75 * 0.75 ** 2 * math.log(4.0),     # y=0, p=3/4: p_t=1/4, alpha_t=3/4
        0.25 * 0.25 ** 2 * math.log(4 / 3),   # y=1, p=3/4: p_t=3/4
        0.75 * 0.25 ** 2 * math.log(4 / 3),   # y=0, p=1/4: p_t=3/4
    ]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.dtype == np.float32 and got.shape == (4,)


def test_gamma0_alpha_none_is_bce_soft_labels_included():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, [64, 1]).astype(np.float32)
    labels = np.concatenate([rng.integers(0, 2, [32, 1]), rng.uniform(0, 1, [32, 1])]) \
        .astype(np.float32)
    got = binary_focal_loss(labels, logits, gamma=0.0, alpha=None)
    want = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
    # and its gradient is the BCE gradient sigmoid(z) - y
    z = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.reduce_sum(binary_focal_loss(labels, z, gamma=0.0, alpha=None))
    np.testing.assert_allclose(tape.gradient(loss, z).numpy(),
                               tf.sigmoid(logits).numpy() - labels, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (1.0, None), (0.5, 0.9), (3.0, 0.0)])
def test_matches_textbook_formula_and_its_gradient(gamma, alpha):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, [200]).astype(np.float32)
    labels = rng.integers(0, 2, [200]).astype(np.float32)
    np.testing.assert_allclose(binary_focal_loss(labels, logits, gamma, alpha).numpy(),
                               _focal64(labels, logits, gamma, alpha), rtol=1e-5, atol=1e-7)
    z32, z64 = tf.constant(logits), tf.constant(logits.astype(np.float64))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([z32, z64])
        ours = tf.reduce_sum(binary_focal_loss(labels, z32, gamma, alpha))
        p = tf.sigmoid(z64)
        y = labels.astype(np.float64)
        p_t = y * p + (1 - y) * (1 - p)
        a_t = 1.0 if alpha is None else y * alpha + (1 - y) * (1 - alpha)
        naive = tf.reduce_sum(-a_t * (1 - p_t) ** gamma * tf.math.log(p_t))
    np.testing.assert_allclose(tape.gradient(ours, z32).numpy(),
                               tape.gradient(naive, z64).numpy(), rtol=1e-4, atol=1e-6)


def test_stable_for_extreme_logits():
    logits = tf.constant([-1e4, -100.0, 100.0, 1e4, -1e4, 1e4], tf.float32)
    labels = tf.constant([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        losses = binary_focal_loss(labels, logits, gamma=2.0, alpha=0.25)
        total = tf.reduce_sum(losses)
    grad = tape.gradient(total, logits).numpy()
    got = losses.numpy()
    assert np.all(np.isfinite(got)) and np.all(np.isfinite(grad))
    # wrong and confident: p_t = e^{-|z|}, loss ~ alpha_t |z|; right and confident: ~0
    np.testing.assert_allclose(got, [0.25e4, 25.0, 0.0, 0.0, 0.0, 0.75e4], rtol=1e-5,
                               atol=1e-30)


def test_focuses_on_hard_examples():
    labels = np.array([1.0, 1.0], np.float32)
    logits = np.array([3.0, -1.0], np.float32)  # easy (p=0.95), hard (p=0.27)
    bce = binary_focal_loss(labels, logits, 0.0, None).numpy()
    focal = binary_focal_loss(labels, logits, 2.0, None).numpy()
    ratio = focal / bce  # = (1 - p)^2
    np.testing.assert_allclose(ratio, (1 - 1 / (1 + np.exp(-logits))) ** 2, rtol=1e-5)
    assert ratio[0] < 0.01 < 0.5 < ratio[1]


def test_low_precision_logits_give_float32_losses():
    logits = tf.constant([[0.5], [-2.0]], tf.bfloat16)
    got = binary_focal_loss(np.array([[1.0], [0.0]], np.float32), logits)
    assert got.dtype == tf.float32
    want = binary_focal_loss(np.array([[1.0], [0.0]], np.float32), [[0.5], [-2.0]])
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


def test_keras_loss_matches_bce_and_roundtrips():
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, [16, 1]).astype(np.float32)
    labels = rng.integers(0, 2, [16, 1]).astype(np.float32)
    weights = rng.integers(0, 2, [16, 1]).astype(np.float32)
    bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    as_bce = BinaryFocalLoss(gamma=0.0, alpha=None)
    np.testing.assert_allclose(as_bce(labels, logits, sample_weight=weights).numpy(),
                               bce(labels, logits, sample_weight=weights).numpy(), rtol=1e-6)
    loss = BinaryFocalLoss(gamma=1.5, alpha=0.4, name="focal")
    want = np.mean(_focal64(labels[:, 0], logits[:, 0], 1.5, 0.4) * weights[:, 0])
    np.testing.assert_allclose(loss(labels, logits, sample_weight=weights).numpy(), want,
                               rtol=1e-5)
    config = loss.get_config()
    assert config["gamma"] == 1.5 and config["alpha"] == 0.4 and config["name"] == "focal"
    clone = tf.keras.losses.deserialize(tf.keras.losses.serialize(loss))
    assert isinstance(clone, BinaryFocalLoss) and clone.get_config() == config
    np.testing.assert_allclose(clone(labels, logits).numpy(), loss(labels, logits).numpy())


def test_keras_loss_trains_a_model():
    rng = np.random.default_rng(3)
    x = rng.standard_normal([64, 4]).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=[4])])
    model.compile(tf.keras.optimizers.SGD(0.5), loss=BinaryFocalLoss())
    first = model.train_on_batch(x, y)
    for _ in range(10):
        last = model.train_on_batch(x, y)
    assert np.isfinite(first) and last < first


@pytest.mark.parametrize("kwargs, message", [
    (dict(gamma=-1.0), "gamma must be a finite number >= 0, got -1.0"),
    (dict(gamma=float("nan")), "gamma must be a finite number >= 0, got nan"),
    (dict(alpha=1.5), "alpha must be None or a number in [0, 1], got 1.5"),
    (dict(alpha="0.25"), "alpha must be None or a number in [0, 1], got '0.25'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        binary_focal_loss([1.0], [0.0], **kwargs)
    assert message in str(err.value)
    with pytest.raises(ValueError) as err:
        BinaryFocalLoss(**kwargs)
    assert message in str(err.value)
