"""PartitionedNormalization: per-domain batch statistics in training, per-domain moving
statistics at inference, per-domain scale and shift."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers.scenario import PartitionedNormalization

D = 3


def _inputs(batch=40, d=3, seed=0, domains=range(D + 1)):
    rng = np.random.default_rng(seed)
    domains = list(domains)
    idx = np.array([domains[i % len(domains)] for i in range(batch)], np.int32)
    # domain p has mean 3p and scale p + 1: the domains really differ
    x = (rng.standard_normal([batch, d]) * (idx[:, None] + 1) + 3.0 * idx[:, None])
    return x.astype(np.float32), idx


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for var in layer.trainable_variables:
        var.assign(rng.normal(1.0, 0.5, var.shape).astype(np.float32))


def _reference(layer, x, idx, training):
    """One domain at a time with numpy; returns (output, new moving mean, new moving var)."""
    mm, mv = layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()
    new_mm, new_mv = mm.copy(), mv.copy()
    m, eps = layer.momentum, layer.epsilon
    idx = np.where((idx >= 0) & (idx <= layer.num_domains), idx, 0)
    mean, var = np.zeros_like(x), np.zeros_like(x)
    groups = [(0, np.ones(len(x), bool))] + [(p, idx == p) for p in range(1, D + 1)]
    for p, rows in groups:
        if training and rows.sum() >= layer.min_batch_count:
            mu, v = x[rows].mean(0), x[rows].var(0)
            new_mm[p] = m * mm[p] + (1 - m) * mu
            new_mv[p] = m * mv[p] + (1 - m) * x[rows].var(0, ddof=1)
    for i, p in enumerate(idx):
        rows = idx == p
        if not training:
            mean[i], var[i] = mm[p], mv[p]
        elif p > 0 and rows.sum() >= layer.min_batch_count:
            mean[i], var[i] = x[rows].mean(0), x[rows].var(0)
        else:
            mean[i], var[i] = x.mean(0), x.var(0)
    gamma = np.concatenate([np.ones([1, x.shape[1]]), layer.domain_gamma.numpy()])[idx]
    beta = np.concatenate([np.zeros([1, x.shape[1]]), layer.domain_beta.numpy()])[idx]
    y = (x - mean) / np.sqrt(var + eps) * (layer.gamma.numpy() * gamma) \
        + layer.beta.numpy() + beta
    return y, new_mm, new_mv


# --------------------------------------------------------------------------------- golden values
def test_golden_training_per_domain_batch_statistics():
    layer = PartitionedNormalization(2, momentum=0.5, epsilon=1e-6)
    x = np.array([[1.0], [3.0], [10.0], [20.0], [30.0], [5.0]], np.float32)
    idx = np.array([1, 1, 2, 2, 2, 0], np.int32)
    layer([x, idx])
    layer.gamma.assign([2.0])
    layer.beta.assign([1.0])
    layer.domain_gamma.assign([[0.5], [3.0]])
    layer.domain_beta.assign([[0.0], [-1.0]])
    y = layer([x, idx], training=True).numpy()[:, 0]
    s = 1.0 / math.sqrt(1.0 + 1e-6)
    # domain 1 rows {1, 3}: mean 2, var 1 -> [-1, 1]; scale 2 * 0.5 = 1, shift 1 + 0 = 1
    np.testing.assert_allclose(y[:2], [1.0 - s, 1.0 + s], rtol=1e-5, atol=1e-6)
    # domain 2 rows {10, 20, 30}: mean 20, var 200/3 -> [-1.2247, 0, 1.2247]; scale 2 * 3 = 6,
    # shift 1 - 1 = 0
    z = 10.0 / math.sqrt(200.0 / 3.0 + 1e-6)
    np.testing.assert_allclose(y[2:5], [-6 * z, 0.0, 6 * z], rtol=1e-5, atol=1e-6)
    # unknown row 5 uses the whole batch {1, 3, 10, 20, 30, 5}: mean 11.5,
    # var (10.5^2 + 8.5^2 + 1.5^2 + 8.5^2 + 18.5^2 + 6.5^2) / 6 = 641.5 / 6; shared scale 2,
    # shift 1 -> 1 + 2 * (5 - 11.5) / sqrt(106.9167) = -0.25727
    np.testing.assert_allclose(y[5], 1.0 + 2.0 * -6.5 / math.sqrt(641.5 / 6 + 1e-6), rtol=1e-5)
    # moving statistics (momentum 0.5, start mean 0 / var 1), variances unbiased:
    #   row 0 (whole batch): mean 0.5 * 11.5 = 5.75; var 0.5 + 0.5 * 641.5 / 5 = 64.65
    #   row 1: mean 0.5 * 2 = 1; var 0.5 + 0.5 * 2 / 1 = 1.5
    #   row 2: mean 0.5 * 20 = 10; var 0.5 + 0.5 * 200 / 2 = 50.5
    np.testing.assert_allclose(layer.moving_mean.numpy()[:, 0], [5.75, 1.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy()[:, 0], [64.65, 1.5, 50.5],
                               rtol=1e-6)


def test_golden_small_domain_uses_batch_statistics():
    layer = PartitionedNormalization(2, momentum=0.5, epsilon=1e-6)
    x = np.array([[1.0], [3.0], [7.0]], np.float32)
    idx = np.array([1, 1, 2], np.int32)  # one row of domain 2 < min_batch_count = 2
    y = layer([x, idx], training=True).numpy()[:, 0]
    # domain 2 row: whole batch {1, 3, 7}: mean 11/3, var (64 + 4 + 100) / 27 = 168/27
    np.testing.assert_allclose(y[2], (7.0 - 11.0 / 3.0) / math.sqrt(168.0 / 27.0 + 1e-6),
                               rtol=1e-5)
    np.testing.assert_allclose(y[:2], [-1.0, 1.0], rtol=1e-5)
    # row 2 (domain 2) is not updated; row 1 and the shared row are
    np.testing.assert_allclose(layer.moving_mean.numpy()[:, 0], [11.0 / 6.0, 1.0, 0.0],
                               rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy()[:, 0],
                               [0.5 + 0.5 * 168.0 / 18.0, 1.5, 1.0], rtol=1e-6)


def test_golden_inference_uses_moving_statistics():
    layer = PartitionedNormalization(2, epsilon=1e-6)
    x = np.array([[4.0, 0.0]] * 4, np.float32)
    idx = np.array([0, 1, 2, 9], np.int32)  # 9: outside [0, 2] -> unknown
    layer([x, idx])
    layer.moving_mean.assign([[0.0, 0.0], [2.0, 1.0], [4.0, -1.0]])
    layer.moving_variance.assign([[1.0, 1.0], [4.0, 1.0], [16.0, 4.0]])
    layer.domain_gamma.assign([[1.0, 1.0], [2.0, 2.0]])
    layer.domain_beta.assign([[0.5, 0.5], [0.0, 0.0]])
    s = lambda v: 1.0 / math.sqrt(v + 1e-6)  # noqa: E731
    # unknown: [4 / 1, 0 / 1]; domain 1: [(4 - 2) / 2, (0 - 1) / 1] + 0.5 = [1.5, -0.5];
    # domain 2: 2 * [(4 - 4) / 4, (0 + 1) / 2] = [0, 1]
    want = [[4 * s(1), 0.0], [2 * s(4) + 0.5, -s(1) + 0.5], [0.0, 2 * s(4)], [4 * s(1), 0.0]]
    for training in (None, False):
        np.testing.assert_allclose(layer([x, idx], training=training).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy()[1], [2.0, 1.0])  # not updated


# ----------------------------------------------------------------------- reference / semantics
@pytest.mark.parametrize("domains", [range(D + 1), [0, 1, 1, 3, 3, 3], [2, 2, 3, 3, 3, 1]])
def test_segment_statistics_match_per_domain_reference(domains):
    x, idx = _inputs(batch=23, domains=domains)  # 23 rows: the last domain may get 1 row
    layer = PartitionedNormalization(D, momentum=0.8)
    layer([x, idx])
    _randomize(layer)
    layer.moving_mean.assign(np.full([D + 1, 3], 0.5, np.float32))
    want, want_mm, want_mv = _reference(layer, x, idx, training=True)
    np.testing.assert_allclose(layer([x, idx], training=True).numpy(), want, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.numpy(), want_mm, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.numpy(), want_mv, rtol=1e-5, atol=1e-5)
    want, _, _ = _reference(layer, x, idx, training=False)
    np.testing.assert_allclose(layer([x, idx]).numpy(), want, rtol=1e-4, atol=1e-4)


def test_moving_statistics_converge_to_domain_statistics():
    layer = PartitionedNormalization(D, momentum=0.5)
    x, idx = _inputs(batch=4000)
    for _ in range(30):
        layer([x, idx], training=True)
    for p in range(1, D + 1):
        np.testing.assert_allclose(layer.moving_mean.numpy()[p], x[idx == p].mean(0), rtol=1e-3)
        np.testing.assert_allclose(layer.moving_variance.numpy()[p], x[idx == p].var(0, ddof=1),
                                   rtol=1e-3)
    np.testing.assert_allclose(layer.moving_mean.numpy()[0], x.mean(0), rtol=1e-3)
    # at inference each domain is then normalized to mean ~0 / var ~1
    y = layer([x, idx]).numpy()
    for p in range(1, D + 1):
        np.testing.assert_allclose(y[idx == p].mean(0), 0.0, atol=1e-2)
        np.testing.assert_allclose(y[idx == p].std(0), 1.0, atol=1e-2)


def test_symbolic_training_flag():
    x, idx = _inputs()
    layer = PartitionedNormalization(D)
    fn = tf.function(lambda t: layer([x, idx], training=t),
                     input_signature=[tf.TensorSpec([], tf.bool)])
    fn(tf.constant(False))
    np.testing.assert_array_equal(layer.moving_mean.numpy(), 0.0)
    train = fn(tf.constant(True)).numpy()
    assert np.all(layer.moving_mean.numpy() != 0.0)
    np.testing.assert_allclose(train, layer([x, idx], training=True).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_unknown_domain_uses_shared_parameters_only():
    x, idx = _inputs()
    layer = PartitionedNormalization(D)
    layer([x, idx])
    _randomize(layer)
    layer.moving_mean.assign(np.random.default_rng(5).normal(0, 1, [D + 1, 3]))
    weights = layer.get_weights()
    unknown = idx == 0
    # (inference first: a training call moves the moving statistics)
    before = [layer([x, idx], training=t).numpy()[unknown] for t in (False, True)]
    layer.set_weights(weights)
    layer.domain_gamma.assign(layer.domain_gamma + 2.0)
    layer.domain_beta.assign(layer.domain_beta - 2.0)
    after = [layer([x, idx], training=t).numpy()[unknown] for t in (False, True)]
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    layer.set_weights(weights)
    # training: unknown rows are normalized with the whole batch's statistics
    want = (x[unknown] - x.mean(0)) / np.sqrt(x.var(0) + layer.epsilon) * layer.gamma.numpy() \
        + layer.beta.numpy()
    np.testing.assert_allclose(after[1], want, rtol=1e-4, atol=1e-4)
    # shared-only computation with the shared moving statistics
    want = (x[unknown] - layer.moving_mean.numpy()[0]) / np.sqrt(
        layer.moving_variance.numpy()[0] + layer.epsilon) * layer.gamma.numpy() \
        + layer.beta.numpy()
    np.testing.assert_allclose(after[0], want, rtol=1e-5, atol=1e-5)


def test_domains_use_different_parameters():
    x = np.tile(np.array([[1.0, -2.0, 0.5]], np.float32), [D + 1, 1])
    idx = np.arange(D + 1, dtype=np.int32)
    layer = PartitionedNormalization(D)
    layer([x, idx])
    _randomize(layer)
    y = layer([x, idx]).numpy()
    for a in range(D + 1):
        for b in range(a + 1, D + 1):
            assert np.abs(y[a] - y[b]).max() > 1e-3, (a, b)


def test_absent_domain_gets_zero_gradient(check_gradients):
    x, idx = _inputs(domains=[0, 1, 3])
    layer = PartitionedNormalization(D)
    layer([x, idx])
    _randomize(layer)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer([x, idx], training=True)) * np.arange(3.0))
    grads = [tf.convert_to_tensor(g).numpy()
             for g in tape.gradient(loss, [layer.domain_gamma, layer.domain_beta])]
    for g in grads:
        assert np.all(g[1] == 0.0) and np.any(g[0] != 0.0) and np.any(g[2] != 0.0)
    x, idx = _inputs()
    check_gradients(layer, [x, idx])


# ------------------------------------------------------------------------------- serialization
def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x, idx = _inputs()
    layer = PartitionedNormalization(D, momentum=0.9, epsilon=1e-4, min_batch_count=3,
                                     gamma_initializer="he_normal")
    layer([x, idx], training=True)
    _randomize(layer)
    clone = check_config_roundtrip(layer, [x, idx])
    np.testing.assert_array_equal(clone.moving_variance.numpy(), layer.moving_variance.numpy())
    check_config_roundtrip(PartitionedNormalization(2, center=False, scale=False),
                           [x, np.minimum(idx, 2)])
    xi, di = tf.keras.Input([3]), tf.keras.Input([], dtype=tf.int32)
    norm = PartitionedNormalization(D)
    model = tf.keras.Model([xi, di], norm([xi, di]))
    for _ in range(3):
        model([x, idx], training=True)
    restored = check_savedmodel(model, [x, idx])
    restored([x, idx], training=True)  # the restored training path still updates
    mm = [v for v in restored.variables if "moving_mean" in v.name][0].numpy()
    assert np.abs(mm - norm.moving_mean.numpy()).max() > 1e-4


# ------------------------------------------------------------------------------ mixed precision
def test_mixed_precision_close_to_float32(mixed_bf16):
    x, idx = _inputs()
    ref = PartitionedNormalization(D, dtype="float32")
    layer = PartitionedNormalization(D)
    ref([x, idx]), layer([x, idx])
    _randomize(ref)
    layer.set_weights(ref.get_weights())
    assert all(v.dtype == tf.float32 for v in layer.variables)
    for training in (True, False):
        got, want = layer([x, idx], training=training), ref([x, idx], training=training)
        assert got.dtype == tf.bfloat16 and want.dtype == tf.float32
        np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want.numpy(),
                                   rtol=0.05, atol=0.05)
    np.testing.assert_allclose(layer.moving_mean.numpy(), ref.moving_mean.numpy(), rtol=0.02,
                               atol=0.02)


# ---------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, message", [
    (dict(num_domains=0), "num_domains must be an integer >= 1, got 0"),
    (dict(momentum=1.0), "momentum must be a float in [0, 1), got 1.0"),
    (dict(momentum="0.9"), "momentum must be a float in [0, 1), got '0.9'"),
    (dict(epsilon=0.0), "epsilon must be a float > 0, got 0.0"),
    (dict(min_batch_count=1), "min_batch_count must be an integer >= 2, got 1"),
    (dict(gamma_initializer="nope"), "gamma_initializer is not a known initializer, got 'nope'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        PartitionedNormalization(**{**dict(num_domains=3), **kwargs})
    assert message in str(err.value)
