"""masked_mean, FixedTaskWeighting and UncertaintyWeighting (Kendall et al., CVPR 2018)."""
import math

import numpy as np
import pytest

import ranking.losses  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is used)
import tensorflow as tf  # noqa: E402

from ranking.losses import FixedTaskWeighting, UncertaintyWeighting, masked_mean  # noqa: E402


# ----------------------------------------------------------------------------- masked_mean
def test_masked_mean_golden():
    losses = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    assert masked_mean(losses, [1.0, 0.0, 1.0, 0.0]).numpy() == 2.0   # (1 + 3) / 2
    assert masked_mean(losses, [True, True, False, True]).numpy() == pytest.approx(7 / 3)
    assert masked_mean(losses).numpy() == 2.5
    # fractional weights: (0.5 * 1 + 2 * 4) / 2.5
    assert masked_mean(losses, [0.5, 0.0, 0.0, 2.0]).numpy() == pytest.approx(3.4)
    # per row, with a [batch, 1] mask broadcast over the last axis
    got = masked_mean([[1.0, 2.0], [3.0, 5.0]], [[1.0, 0.0], [1.0, 1.0]], axis=1).numpy()
    np.testing.assert_allclose(got, [1.0, 4.0])
    assert masked_mean(losses[:, None], np.ones([4, 1])).dtype == tf.float32


def test_masked_mean_all_zero_mask_is_zero_without_nan():
    losses = tf.constant([1.0, 2.0, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(losses)
        value = masked_mean(losses, [0.0, 0.0, 0.0])
    assert value.numpy() == 0.0
    np.testing.assert_array_equal(tape.gradient(value, losses).numpy(), [0.0, 0.0, 0.0])
    # a row with mask 0 cannot leak a non-finite loss
    assert masked_mean([1.0, np.inf, np.nan], [1.0, 0.0, 0.0]).numpy() == 1.0
    # and a masked row gets no gradient, a counted row 1 / count
    with tf.GradientTape() as tape:
        tape.watch(losses)
        value = masked_mean(losses, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(tape.gradient(value, losses).numpy(), [0.5, 0.0, 0.5])


def test_masked_mean_for_cvr_on_clicked_rows():
    clicks = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    conversions = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    cvr_logits = np.array([0.0, 3.0, math.log(3.0), -3.0], np.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=conversions, logits=cvr_logits)
    # rows 0 and 2 only: -log(1/2) and -log(1 - 3/4)
    np.testing.assert_allclose(masked_mean(bce, clicks).numpy(),
                               (math.log(2.0) + math.log(4.0)) / 2, rtol=1e-6)


# -------------------------------------------------------------------------- fixed weights
def test_fixed_weighting():
    layer = FixedTaskWeighting([0.5, 2.0])
    assert layer([tf.constant(2.0), tf.constant(3.0)]).numpy() == 7.0
    assert layer(tf.constant([2.0, 3.0])).numpy() == 7.0
    assert layer([tf.constant([2.0]), 3.0]).numpy() == 7.0  # shape-[1] losses are scalars
    assert not layer.trainable_weights
    clone = FixedTaskWeighting.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config() and clone.task_weights == [0.5, 2.0]
    with pytest.raises(ValueError, match="FixedTaskWeighting with num_tasks=2 got 3 losses"):
        layer([1.0, 2.0, 3.0])


@pytest.mark.parametrize("weights, message", [
    ([], "weights must be a non-empty sequence of finite numbers >= 0, got []"),
    ([1.0, -0.5], "weights must be a non-empty sequence of finite numbers >= 0, "
                  "got [1.0, -0.5]"),
    ("12", "weights must be a non-empty sequence of finite numbers >= 0, got '12'"),
    ([1.0, float("nan")], "got [1.0, nan]"),
])
def test_fixed_weighting_bad_weights(weights, message):
    with pytest.raises(ValueError) as err:
        FixedTaskWeighting(weights)
    assert message in str(err.value)


# -------------------------------------------------------------------- uncertainty weights
def test_uncertainty_golden_and_gradients():
    layer = UncertaintyWeighting(2)
    layer.log_variances.assign([0.0, math.log(2.0)])
    losses = tf.constant([1.0, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(losses)
        total = layer(losses)
    # exp(0) * 1 + 0 + exp(-ln 2) * 3 + ln 2
    np.testing.assert_allclose(total.numpy(), 2.5 + math.log(2.0), rtol=1e-6)
    grad_s, grad_l = tape.gradient(total, [layer.log_variances, losses])
    # d/ds_t = 1 - exp(-s_t) L_t = [1 - 1, 1 - 3/2]; d/dL_t = exp(-s_t) = [1, 1/2]
    np.testing.assert_allclose(grad_s.numpy(), [0.0, -0.5], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_l.numpy(), [1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(layer.task_weights().numpy(), [1.0, 0.5], rtol=1e-6)


def test_uncertainty_paper_classification_form():
    layer = UncertaintyWeighting(2, initial_log_variance=math.log(2.0), log_variance_weight=0.5)
    np.testing.assert_allclose(layer.log_variances.numpy(), [math.log(2.0)] * 2, rtol=1e-6)
    with tf.GradientTape() as tape:
        total = layer([tf.constant(1.0), tf.constant(3.0)])
    # L_t / sigma_t^2 + log sigma_t = (1 + 3) / 2 + 2 * (ln 2) / 2
    np.testing.assert_allclose(total.numpy(), 2.0 + math.log(2.0), rtol=1e-6)
    # d/ds_t = 0.5 - exp(-s_t) L_t = [0.5 - 0.5, 0.5 - 1.5]
    np.testing.assert_allclose(tape.gradient(total, layer.log_variances).numpy(),
                               [0.0, -1.0], rtol=1e-6, atol=1e-7)


def test_uncertainty_learns_inverse_loss_weights():
    layer = UncertaintyWeighting(3)
    losses = tf.constant([0.5, 2.0, 8.0])
    optimizer = tf.keras.optimizers.SGD(0.2)
    for _ in range(300):
        with tf.GradientTape() as tape:
            total = layer(losses)
        optimizer.apply_gradients(zip(tape.gradient(total, layer.trainable_variables),
                                      layer.trainable_variables))
    # stationary point exp(s_t) = L_t: each weight -> 1 / L_t
    np.testing.assert_allclose(layer.task_weights().numpy(), [2.0, 0.5, 0.125], rtol=1e-3)


def test_uncertainty_variables_float32_under_mixed_precision(mixed_bf16):
    layer = UncertaintyWeighting(2)
    total = layer([tf.constant(1.0, tf.bfloat16), tf.constant(2.0, tf.bfloat16)])
    assert layer.log_variances.dtype == tf.float32 and total.dtype == tf.float32
    assert total.numpy() == 3.0
    assert FixedTaskWeighting([1.0, 1.0])([tf.constant(1.0, tf.bfloat16), 2.0]).dtype \
        == tf.float32


def test_uncertainty_config_and_savedmodel(tmp_path):
    layer = UncertaintyWeighting(3, initial_log_variance=0.5, log_variance_weight=0.5,
                                 name="uw")
    config = layer.get_config()
    clone = UncertaintyWeighting.from_config(config)
    assert clone.get_config() == config
    np.testing.assert_allclose(clone.log_variances.numpy(), [0.5] * 3)
    inp = tf.keras.Input([3])
    model = tf.keras.Model(inp, tf.keras.layers.Lambda(lambda t: t[0])(
        tf.reshape(layer(inp[0]), [1, 1])))
    layer.log_variances.assign([0.1, -0.2, 0.3])
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    expected = model(x).numpy()
    model.save(str(tmp_path / "m"), save_format="tf")
    restored = tf.keras.models.load_model(str(tmp_path / "m"))
    np.testing.assert_allclose(restored(x).numpy(), expected, rtol=1e-6)
    assert len(model.trainable_variables) == 1  # the log-variances are trained with the model


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_tasks=0), "num_tasks must be an integer >= 1, got 0"),
    (dict(num_tasks=True), "num_tasks must be an integer >= 1, got True"),
    (dict(initial_log_variance=float("inf")), "initial_log_variance must be a finite number, "
                                              "got inf"),
    (dict(log_variance_weight=0.0), "log_variance_weight must be > 0, got 0.0"),
    (dict(log_variance_weight="1"), "log_variance_weight must be a finite number, got '1'"),
])
def test_uncertainty_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        UncertaintyWeighting(**{**dict(num_tasks=2), **kwargs})
    assert message in str(err.value)
    with pytest.raises(ValueError, match="UncertaintyWeighting with num_tasks=2 got 1 losses"):
        UncertaintyWeighting(2)([1.0])
