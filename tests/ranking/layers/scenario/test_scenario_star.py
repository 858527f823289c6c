"""STAR: StarDense (W * W_p, b + b_p), StarTower (PN + star FCN) and StarAuxiliaryNet."""
import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import TaskTowers
from ranking.layers.scenario import (PartitionedNormalization, StarAuxiliaryNet, StarDense,
                                     StarTower)

D = 3


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    for var in layer.trainable_variables:
        var.assign(rng.normal(0.5, 0.5, var.shape).astype(np.float32))


def _inputs(batch=24, d=5, seed=1, domains=range(D + 1)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal([batch, d]).astype(np.float32)
    domains = list(domains)
    idx = np.array([domains[i % len(domains)] for i in range(batch)], np.int32)
    return x, idx


def _star_reference(layer, x, idx):
    """StarDense one row at a time: W * W_p (element-wise), b + b_p; unknown: W, b."""
    w, b = layer.shared_kernel.numpy(), layer.shared_bias.numpy()
    out = []
    for row, p in zip(x, idx):
        p = int(p) if 0 <= p <= layer.num_domains else 0
        if p == 0:
            out.append(row @ w + b)
        else:
            out.append(row @ (w * layer.domain_kernels.numpy()[p - 1])
                       + b + layer.domain_biases.numpy()[p - 1])
    return layer._activation(tf.constant(np.array(out), tf.float32)).numpy()


# --------------------------------------------------------------------------------- golden values
def test_star_dense_golden():
    layer = StarDense(1, num_domains=2)
    x = np.array([[1.0, 1.0]] * 4, np.float32)
    idx = np.array([0, 1, 2, -1], np.int32)
    layer([x, idx])
    layer.shared_kernel.assign([[1.0], [2.0]])
    layer.shared_bias.assign([0.5])
    layer.domain_kernels.assign([[[2.0], [1.0]], [[0.0], [3.0]]])
    layer.domain_biases.assign([[1.0], [-2.0]])
    # unknown: 1 + 2 + 0.5 = 3.5
    # domain 1: W * W_1 = [[2], [2]] -> 4 + (0.5 + 1) = 5.5
    # domain 2: W * W_2 = [[0], [6]] -> 6 + (0.5 - 2) = 4.5; index -1 -> unknown 3.5
    np.testing.assert_allclose(layer([x, idx]).numpy(), [[3.5], [5.5], [4.5], [3.5]],
                               rtol=1e-6)


def test_star_dense_starts_as_shared_layer():
    x, idx = _inputs()
    layer = StarDense(4, D, activation="relu")
    y = layer([x, idx]).numpy()
    np.testing.assert_array_equal(layer.domain_kernels.numpy(), 1.0)
    np.testing.assert_array_equal(layer.domain_biases.numpy(), 0.0)
    shared = np.maximum(x @ layer.shared_kernel.numpy() + layer.shared_bias.numpy(), 0.0)
    np.testing.assert_allclose(y, shared, rtol=1e-5, atol=1e-6)


def test_aux_net_golden():
    aux = StarAuxiliaryNet(2, num_tasks=2, embedding_dim=1, units=[])
    f = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    idx = np.array([0, 1, 2, 5], np.int32)
    aux([f, idx])
    aux.embedding.embeddings.assign([[0.0], [1.0], [-2.0]])  # rows: unknown, domain 1, 2
    # logits = [embedding, f] @ [[2, 0], [1, -1]] + [0, 0.5]
    aux.logit.kernel.assign([[2.0, 0.0], [1.0, -1.0]])
    aux.logit.bias.assign([0.0, 0.5])
    # task 0: 2e + f -> [0 + 1, 2 + 2, -4 + 3, 0 + 4]; task 1: -f + 0.5
    t0, t1 = aux([f, idx])
    assert t0.dtype == tf.float32 and t0.shape == (4, 1)
    np.testing.assert_allclose(t0.numpy()[:, 0], [1.0, 4.0, -1.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(t1.numpy()[:, 0], [-0.5, -1.5, -2.5, -3.5], rtol=1e-6)
    only = StarAuxiliaryNet(2, embedding_dim=1, units=[])
    only(idx)
    only.embedding.embeddings.assign([[0.0], [1.0], [-2.0]])
    only.logit.kernel.assign([[3.0]])
    (logit,) = only(idx)  # 3e: [0, 3, -6, 0]
    np.testing.assert_allclose(logit.numpy()[:, 0], [0.0, 3.0, -6.0, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="call it the same way"):
        only([f, idx])


# ----------------------------------------------------------------------- reference / semantics
def test_star_dense_matches_reference_and_unknown_is_shared():
    x, idx = _inputs()
    idx[5] = 17  # outside [0, D]: unknown
    layer = StarDense(4, D, activation="relu")
    layer([x, idx])
    _randomize(layer)
    np.testing.assert_allclose(layer([x, idx]).numpy(), _star_reference(layer, x, idx),
                               rtol=1e-5, atol=1e-5)
    zeros = np.zeros_like(idx)
    shared = np.maximum(x @ layer.shared_kernel.numpy() + layer.shared_bias.numpy(), 0.0)
    np.testing.assert_allclose(layer([x, zeros]).numpy(), shared, rtol=1e-5, atol=1e-5)


def test_star_tower_matches_reference():
    x, idx = _inputs()
    tower = StarTower(2, [6, 3], D)
    out = tower([x, idx])
    assert len(out) == 2 and out[0] is out[1] and out[0].shape == (24, 3)
    _randomize(tower)
    tower.norm.moving_variance.assign(np.full([D + 1, 5], 2.0, np.float32))
    h = tower.norm([x, idx]).numpy()  # inference: the domain's moving statistics
    for dense in tower.dense_layers:
        h = _star_reference(dense, h, idx)
    np.testing.assert_allclose(tower([x, idx])[0].numpy(), h, rtol=1e-5, atol=1e-5)
    assert StarTower(1, [4], D, partitioned_norm=False).norm is None


@pytest.mark.parametrize("make", [lambda: StarDense(4, D),
                                  lambda: StarTower(1, [4, 3], D)])
def test_domains_use_different_parameters(make):
    x = np.tile(np.random.default_rng(2).standard_normal([1, 5]).astype(np.float32), [4, 1])
    idx = np.arange(D + 1, dtype=np.int32)
    layer = make()
    layer([x, idx])
    _randomize(layer)
    y = tf.nest.flatten(layer([x, idx]))[0].numpy()
    for a in range(D + 1):
        for b in range(a + 1, D + 1):
            assert np.abs(y[a] - y[b]).max() > 1e-3, (a, b)


def test_absent_domain_gets_zero_gradient():
    x, idx = _inputs(domains=[0, 1, 3])  # no domain 2
    tower = StarTower(1, [6, 3], D)
    tower([x, idx])
    _randomize(tower)
    params = [v for v in tower.trainable_variables if "domain" in v.name]
    assert len(params) == 6  # PN gamma_p/beta_p + 2 x (W_p, b_p)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(tower([x, idx], training=True)[0]))
    for var, grad in zip(params, tape.gradient(loss, params)):
        grad = tf.convert_to_tensor(grad).numpy()
        assert np.all(grad[1] == 0.0), var.name
        assert np.any(grad[0] != 0.0) and np.any(grad[2] != 0.0), var.name


@pytest.mark.parametrize("make, with_features", [
    (lambda: StarDense(4, D), True),
    (lambda: StarTower(2, [6, 3], D, dropout=0.1), True),
    (lambda: StarAuxiliaryNet(D, num_tasks=2, units=[4]), True),
    (lambda: StarAuxiliaryNet(D, units=[]), False),
])
def test_gradients_reach_every_variable(check_gradients, make, with_features):
    x, idx = _inputs()
    layer = make()
    inputs = [x, idx] if with_features else idx
    layer(inputs)
    _randomize(layer)
    check_gradients(layer, inputs)


def test_fit_star_model_with_auxiliary_logit():
    """End to end: StarTower + TaskTowers + StarAuxiliaryNet logits added, as a model does."""
    x, idx = _inputs(batch=64)
    y = ((x[:, 0] > 0) | (idx == 2)).astype(np.float32)[:, None]
    xi, di = tf.keras.Input([5]), tf.keras.Input([], dtype=tf.int32)
    tower = StarTower(1, [8], D)
    main = TaskTowers(1)(tower([xi, di]))
    aux = StarAuxiliaryNet(D, units=[4])(di)
    model = tf.keras.Model([xi, di], tf.keras.layers.Add()([main[0], aux[0]]))
    model.compile("adam", tf.keras.losses.BinaryCrossentropy(from_logits=True))
    before = [v.numpy().copy() for v in model.trainable_variables]
    model.fit([x, idx], y, batch_size=16, epochs=1, verbose=0)
    assert all(np.any(b != a.numpy()) for b, a in zip(before, model.trainable_variables))
    assert np.all(tower.norm.moving_mean.numpy() != 0.0)  # PN statistics updated inside fit


# ------------------------------------------------------------------------------- serialization
def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x, idx = _inputs()
    check_config_roundtrip(StarDense(4, D, activation="relu", kernel_regularizer="l2",
                                     bias_initializer="ones"), [x, idx])
    tower = StarTower(2, [6, 3], D, dropout=0.2, norm_momentum=0.9, norm_epsilon=1e-4,
                      kernel_initializer="he_normal")
    tower([x, idx], training=True)
    _randomize(tower)
    check_config_roundtrip(tower, [x, idx])
    check_config_roundtrip(StarTower(1, [4], D, partitioned_norm=False), [x, idx])
    check_config_roundtrip(StarAuxiliaryNet(D, num_tasks=2, embedding_dim=3, units=[5, 4],
                                            dropout=0.1), [x, idx])
    check_config_roundtrip(StarAuxiliaryNet(D, units=[]), idx)
    xi, di = tf.keras.Input([5]), tf.keras.Input([], dtype=tf.int32)
    tower = StarTower(2, [6, 3], D)
    main = TaskTowers(2, [4])(tower([xi, di]))
    aux = StarAuxiliaryNet(D, num_tasks=2)([xi, di])
    model = tf.keras.Model([xi, di], [m + a for m, a in zip(main, aux)])
    model([x, idx], training=True)
    _randomize(model)
    check_savedmodel(model, [x, idx])


# ------------------------------------------------------------------------------ mixed precision
def test_mixed_precision_close_to_float32(mixed_bf16):
    x, idx = _inputs(batch=16)
    ref = StarTower(2, [8, 4], D, dtype="float32")
    tower = StarTower(2, [8, 4], D)
    ref_aux = StarAuxiliaryNet(D, num_tasks=2, dtype="float32")
    aux = StarAuxiliaryNet(D, num_tasks=2)
    for layer, inputs in ((ref, [x, idx]), (tower, [x, idx]), (ref_aux, [x, idx]),
                          (aux, [x, idx])):
        layer(inputs)
    _randomize(ref)
    _randomize(ref_aux)
    tower.set_weights(ref.get_weights())
    aux.set_weights(ref_aux.get_weights())
    assert all(v.dtype == tf.float32 for v in tower.variables + aux.variables)
    got, want = tower([x, idx]), ref([x, idx])
    assert got[0].dtype == tf.bfloat16 and want[0].dtype == tf.float32
    np.testing.assert_allclose(tf.cast(got[0], tf.float32).numpy(), want[0].numpy(),
                               rtol=0.05, atol=0.05)
    got, want = aux([x, idx]), ref_aux([x, idx])
    assert got[0].dtype == tf.float32  # logits stay float32
    np.testing.assert_allclose(got[1].numpy(), want[1].numpy(), rtol=0.05, atol=0.05)


# ---------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("cls, kwargs, message", [
    (StarDense, dict(units=0), "units must be an integer >= 1, got 0"),
    (StarDense, dict(num_domains=-1), "num_domains must be an integer >= 1, got -1"),
    (StarDense, dict(activation="nope"), "activation is not a known activation, got 'nope'"),
    (StarDense, dict(kernel_initializer="nope"),
     "kernel_initializer is not a known initializer, got 'nope'"),
    (StarTower, dict(num_tasks=0), "num_tasks must be an integer >= 1, got 0"),
    (StarTower, dict(units=[]), "units must not be empty, got []"),
    (StarTower, dict(dropout=-0.1), "dropout must be a float in [0, 1), got -0.1"),
    (StarTower, dict(norm_momentum=1.5), "norm_momentum must be a float in [0, 1), got 1.5"),
    (StarTower, dict(norm_epsilon=-1.0), "norm_epsilon must be a float > 0, got -1.0"),
    (StarAuxiliaryNet, dict(embedding_dim=0), "embedding_dim must be an integer >= 1, got 0"),
    (StarAuxiliaryNet, dict(num_tasks=True), "num_tasks must be an integer >= 1, got True"),
    (StarAuxiliaryNet, dict(units=[4, -1]),
     "units must be a sequence of positive integers, got [4, -1]"),
])
def test_bad_arguments(cls, kwargs, message):
    base = {StarDense: dict(units=4, num_domains=D),
            StarTower: dict(num_tasks=2, units=[4], num_domains=D),
            StarAuxiliaryNet: dict(num_domains=D)}[cls]
    with pytest.raises(ValueError) as err:
        cls(**{**base, **kwargs})
    assert message in str(err.value)


def test_partitioned_norm_is_exported_with_star():
    assert StarTower(1, [2], D).norm.__class__ is PartitionedNormalization
