"""DWG: DomainDense (full / residual / low_rank, shrinkage) and DWGTower."""
import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import TaskTowers
from ranking.layers.scenario import DomainDense, DWGTower

D = 3  # known domains in the random tests


def _randomize(layer, seed=0):
    """Random trainable weights (non-trainable counters kept)."""
    rng = np.random.default_rng(seed)
    for var in layer.trainable_variables:
        var.assign(rng.normal(0, 0.5, var.shape).astype(np.float32))


def _inputs(batch=24, d=5, seed=1, domains=range(D + 1)):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal([batch, d]).astype(np.float32)
    domains = list(domains)
    idx = np.array([domains[i % len(domains)] for i in range(batch)], np.int32)
    return x, idx


def _dense_reference(layer, x, idx):
    """DomainDense one row at a time: the row's effective kernel, then x W + b."""
    w0 = layer.shared_kernel.numpy()
    b0 = layer.shared_bias.numpy() if layer.use_bias else np.zeros(layer.units, np.float32)
    if layer.domain_counts is not None:
        n = layer.domain_counts.numpy().astype(np.float64)
        lam = n / (n + layer.shrinkage_k)
    else:
        lam = np.ones(layer.num_domains)
    out = []
    for row, p in zip(x, idx):
        p = int(p) if 0 <= p <= layer.num_domains else 0
        w, b = w0, b0
        if p > 0:
            lp = lam[p - 1] * layer.delta_scale
            db = layer.domain_biases.numpy()[p - 1] if layer.use_bias else 0.0
            if layer.mode == "full":
                w = w0 + lp * (layer.domain_kernels.numpy()[p - 1] - w0)
                b = b0 + lp * (db - b0)
            elif layer.mode == "residual":
                w = w0 + lp * layer.domain_kernels.numpy()[p - 1]
                b = b0 + lp * db
            else:
                w = w0 + lp * layer.domain_u.numpy()[p - 1] @ layer.domain_v.numpy()[p - 1]
                b = b0 + lp * db
        y = row @ w + b
        out.append(y)
    y = np.array(out)
    return layer._activation(tf.constant(y, tf.float32)).numpy()


def _domain_params(layer, p):
    """The slices of domain p's own parameters (p >= 1)."""
    names = {"full": ["domain_kernels"], "residual": ["domain_kernels"],
             "low_rank": ["domain_u", "domain_v"]}[layer.mode]
    if layer.use_bias:
        names.append("domain_biases")
    return [(getattr(layer, n), p - 1) for n in names]


MODES = [dict(mode="full"), dict(mode="residual"), dict(mode="low_rank", rank=2),
         dict(mode="full", shrinkage_k=10.0, initial_counts=[5, 30, 0]),
         dict(mode="residual", shrinkage_k=4.0, initial_counts=[1, 2, 12]),
         dict(mode="low_rank", rank=3, shrinkage_k=2.0, initial_counts=[3, 0, 9]),
         dict(mode="residual", delta_scale=0.1), dict(mode="low_rank", rank=2, delta_scale=3.0)]


# --------------------------------------------------------------------------------- golden values
def test_golden_full():
    layer = DomainDense(1, num_domains=2)
    x = np.array([[1.0, 2.0]] * 4, np.float32)
    idx = np.array([0, 1, 2, 7], np.int32)  # 7 is outside [0, 2]: unknown
    layer([x, idx])
    layer.shared_kernel.assign([[1.0], [1.0]])
    layer.shared_bias.assign([0.0])
    layer.domain_kernels.assign([[[2.0], [1.0]], [[0.0], [-1.0]]])
    layer.domain_biases.assign([[1.0], [0.5]])
    # unknown: 1 + 2 + 0 = 3; domain 1: 2*1 + 1*2 + 1 = 5; domain 2: 0 - 2 + 0.5 = -1.5;
    # index 7: unknown -> 3
    np.testing.assert_allclose(layer([x, idx]).numpy(), [[3.0], [5.0], [-1.5], [3.0]],
                               rtol=1e-6)


def test_golden_full_with_shrinkage():
    layer = DomainDense(1, 2, shrinkage_k=1.0, initial_counts=[1, 3])
    x = np.array([[1.0, 2.0]] * 3, np.float32)
    idx = np.array([0, 1, 2], np.int32)
    layer([x, idx])
    layer.set_weights([np.array([[1.0], [1.0]]), np.array([0.0]),
                       np.array([[[3.0], [1.0]], [[0.0], [-1.0]]]),
                       np.array([[2.0], [1.0]]), np.array([1, 3])])
    # lambda_1 = 1 / (1 + 1) = 0.5, lambda_2 = 3 / (3 + 1) = 0.75
    # unknown: 3; domain 1: own 3 + 2 + 2 = 7 -> 0.5 * 3 + 0.5 * 7 = 5
    # domain 2: own 0 - 2 + 1 = -1 -> 0.25 * 3 + 0.75 * -1 = 0
    np.testing.assert_allclose(layer([x, idx]).numpy(), [[3.0], [5.0], [0.0]], atol=1e-6)


def test_golden_residual_shrinkage_and_count_updates():
    layer = DomainDense(1, 2, mode="residual", shrinkage_k=2.0, initial_counts=[2, 6])
    x = np.array([[1.0, 2.0]] * 4, np.float32)
    idx = np.array([1, 1, 2, 0], np.int32)
    layer([x, idx])
    layer.shared_kernel.assign([[1.0], [1.0]])
    layer.domain_kernels.assign([[[2.0], [0.0]], [[0.0], [-4.0]]])  # deltas
    layer.domain_biases.assign([[1.0], [0.4]])  # bias deltas
    # inference, counts [2, 6]: lambda = [2/4, 6/8] = [0.5, 0.75]
    # domain 1: 3 + 0.5 * (2 + 1) = 4.5; domain 2: 3 + 0.75 * (-8 + 0.4) = -2.7; unknown: 3
    want = [[4.5], [4.5], [-2.7], [3.0]]
    np.testing.assert_allclose(layer([x, idx]).numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(layer.domain_counts.numpy(), [2, 6])  # not training
    # training: the batch (two rows of domain 1, one of domain 2) is counted first -> [4, 7]
    # lambda = [4/6, 7/9]: domain 1: 3 + 2/3 * 3 = 5; domain 2: 3 + 7/9 * -7.6
    got = layer([x, idx], training=True).numpy()
    np.testing.assert_allclose(got, [[5.0], [5.0], [3.0 - 7.0 / 9.0 * 7.6], [3.0]], rtol=1e-6)
    np.testing.assert_array_equal(layer.domain_counts.numpy(), [4, 7])


def test_golden_residual_delta_scale_with_shrinkage():
    layer = DomainDense(1, 2, mode="residual", shrinkage_k=2.0, initial_counts=[2, 6],
                        delta_scale=0.1)
    x = np.array([[1.0, 2.0]] * 3, np.float32)
    idx = np.array([1, 2, 0], np.int32)
    layer([x, idx])
    layer.shared_kernel.assign([[1.0], [1.0]])
    layer.domain_kernels.assign([[[2.0], [0.0]], [[0.0], [-4.0]]])
    layer.domain_biases.assign([[1.0], [0.4]])
    # s lambda = 0.1 * [0.5, 0.75]: domain 1: 3 + 0.05 * (2 + 1) = 3.15;
    # domain 2: 3 + 0.075 * (-8 + 0.4) = 2.43; unknown: 3
    np.testing.assert_allclose(layer([x, idx]).numpy(), [[3.15], [2.43], [3.0]], rtol=1e-6)
    assert layer.get_config()["delta_scale"] == 0.1


def test_golden_low_rank():
    layer = DomainDense(1, 2, mode="low_rank", rank=1)
    x = np.array([[1.0, 2.0]] * 3, np.float32)
    idx = np.array([0, 1, 2], np.int32)
    layer([x, idx])
    layer.shared_kernel.assign([[1.0], [1.0]])
    layer.domain_u.assign([[[1.0], [1.0]], [[1.0], [0.0]]])  # [D, d, rank]
    layer.domain_v.assign([[[2.0]], [[-1.0]]])  # [D, rank, units]
    layer.domain_biases.assign([[0.5], [0.0]])
    # delta_1 = U_1 V_1 = [[2], [2]], delta_2 = [[-1], [0]]
    # unknown: 3; domain 1: 3 + (2 + 4) + 0.5 = 9.5; domain 2: 3 - 1 = 2
    np.testing.assert_allclose(layer([x, idx]).numpy(), [[3.0], [9.5], [2.0]], rtol=1e-6)


def test_low_rank_starts_at_shared_weights():
    x, idx = _inputs()
    layer = DomainDense(4, D, mode="low_rank", rank=2)
    y = layer([x, idx]).numpy()
    shared = x @ layer.shared_kernel.numpy() + layer.shared_bias.numpy()
    np.testing.assert_allclose(y, shared, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- reference / semantics
@pytest.mark.parametrize("kwargs", MODES)
def test_matches_per_row_reference(kwargs):
    x, idx = _inputs()
    idx[3] = -2  # out of range: unknown
    layer = DomainDense(4, D, activation="relu", **kwargs)
    layer([x, idx])
    _randomize(layer)
    np.testing.assert_allclose(layer([x, idx]).numpy(), _dense_reference(layer, x, idx),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", MODES)
def test_unknown_domain_uses_shared_weights_only(kwargs):
    x, _ = _inputs()
    layer = DomainDense(4, D, **kwargs)
    idx = np.zeros(len(x), np.int32)
    layer([x, idx])
    _randomize(layer)
    shared = x @ layer.shared_kernel.numpy() + layer.shared_bias.numpy()
    np.testing.assert_allclose(layer([x, idx]).numpy(), shared, rtol=1e-5, atol=1e-5)
    # changing every domain parameter leaves unknown rows alone
    for var, _ in _domain_params(layer, 1):
        var.assign(var + 3.0)
    np.testing.assert_allclose(layer([x, idx]).numpy(), shared, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", MODES)
def test_domains_use_different_parameters(kwargs):
    x = np.tile(np.random.default_rng(2).standard_normal([1, 5]).astype(np.float32), [4, 1])
    idx = np.arange(D + 1, dtype=np.int32)  # same x, domains 0..3
    layer = DomainDense(4, D, **kwargs)
    layer([x, idx])
    _randomize(layer)
    y = layer([x, idx]).numpy()
    counts = layer.domain_counts.numpy() if layer.domain_counts is not None else [1] * D
    # a domain with no examples counted is fully shrunk (lambda = 0) to the shared weights
    effective = [0] + [p if counts[p - 1] else 0 for p in range(1, D + 1)]
    for a in range(D + 1):
        for b in range(a + 1, D + 1):
            if effective[a] == effective[b]:
                np.testing.assert_allclose(y[a], y[b], rtol=1e-6, atol=1e-6)
            else:
                assert np.abs(y[a] - y[b]).max() > 1e-3, (a, b)


@pytest.mark.parametrize("kwargs", MODES)
def test_absent_domain_gets_zero_gradient(kwargs):
    x, idx = _inputs(domains=[0, 1, 3])  # no domain 2
    layer = DomainDense(4, D, activation="tanh", **kwargs)
    layer([x, idx])
    _randomize(layer)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer([x, idx])))
    params = [v for v in layer.trainable_variables if "domain" in v.name]
    grads = dict(zip([v.name for v in params],
                     [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, params)]))
    for var, row in _domain_params(layer, 2):
        assert np.all(grads[var.name][row] == 0.0), var.name
    for var, row in _domain_params(layer, 1):  # present (and counted) domain
        assert np.any(grads[var.name][row] != 0.0), var.name


@pytest.mark.parametrize("kwargs", MODES)
def test_gradients_reach_every_variable(check_gradients, kwargs):
    x, idx = _inputs()
    layer = DomainDense(4, D, **kwargs)
    layer([x, idx])
    _randomize(layer)  # low_rank: V starts at 0, so U has no gradient at initialization
    check_gradients(layer, [x, idx])


def test_tower_gradients_and_reference(check_gradients):
    x, idx = _inputs()
    tower = DWGTower(2, [6, 3], D, mode="low_rank", rank=2)
    out = tower([x, idx])
    assert len(out) == 2 and out[0] is out[1] and out[0].shape == (24, 3)
    _randomize(tower)
    h = x
    for dense in tower.dense_layers:
        h = _dense_reference(dense, h, idx)
    np.testing.assert_allclose(tower([x, idx])[0].numpy(), h, rtol=1e-5, atol=1e-5)
    check_gradients(tower, [x, idx])


def test_counts_update_only_in_training():
    x, idx = _inputs(batch=7, domains=[0, 1, 1, 3])  # idx 0,1,1,3,0,1,1
    layer = DomainDense(2, D, shrinkage_k=5.0)
    layer([x, idx])
    np.testing.assert_array_equal(layer.domain_counts.numpy(), [0, 0, 0])
    layer([x, idx], training=False)
    np.testing.assert_array_equal(layer.domain_counts.numpy(), [0, 0, 0])
    layer([x, idx], training=True)
    np.testing.assert_array_equal(layer.domain_counts.numpy(), [4, 0, 1])
    # a symbolic training flag goes through tf.cond
    fn = tf.function(lambda t: layer([x, idx], training=t),
                     input_signature=[tf.TensorSpec([], tf.bool)])
    fn(tf.constant(True))
    fn(tf.constant(False))
    np.testing.assert_array_equal(layer.domain_counts.numpy(), [8, 0, 2])
    frozen = DomainDense(2, D, shrinkage_k=5.0, initial_counts=[1, 2, 3], update_counts=False)
    frozen([x, idx], training=True)
    np.testing.assert_array_equal(frozen.domain_counts.numpy(), [1, 2, 3])
    assert not frozen.domain_counts.trainable and not DomainDense(2, D).weights


def test_fit_updates_counts_and_trains():
    x, idx = _inputs(batch=64)
    y = (x[:, :1] > 0).astype(np.float32)
    xi, di = tf.keras.Input([5]), tf.keras.Input([], dtype=tf.int32)
    tower = DWGTower(1, [8], D, mode="residual", shrinkage_k=10.0, dropout=0.1)
    logits = TaskTowers(1)(tower([xi, di]))[0]
    model = tf.keras.Model([xi, di], logits)
    model.compile("adam", tf.keras.losses.BinaryCrossentropy(from_logits=True))
    before = [v.numpy().copy() for v in tower.trainable_variables]
    model.fit([x, idx], y, batch_size=16, epochs=1, verbose=0)
    counts = tower.dense_layers[0].domain_counts.numpy()
    np.testing.assert_array_equal(counts, [16, 16, 16])  # 64 rows, domains 0..3 cycled
    assert all(np.any(b != a.numpy()) for b, a in zip(before, tower.trainable_variables))


def test_domain_index_column_and_float_input():
    x, idx = _inputs()
    layer = DomainDense(3, D)
    want = layer([x, idx]).numpy()
    np.testing.assert_allclose(layer([x, idx[:, None]]).numpy(), want, rtol=1e-6)
    np.testing.assert_allclose(layer([x, idx.astype(np.int64)]).numpy(), want, rtol=1e-6)


# ------------------------------------------------------------------------------- serialization
def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x, idx = _inputs()
    layer = DomainDense(4, D, mode="low_rank", rank=2, shrinkage_k=3.0,
                        initial_counts=[1, 2, 3], activation="relu",
                        kernel_regularizer="l2", delta_regularizer="l2")
    layer([x, idx])
    _randomize(layer)
    layer([x, idx], training=True)  # counts move away from initial_counts
    clone = check_config_roundtrip(layer, [x, idx])
    np.testing.assert_array_equal(clone.domain_counts.numpy(), [7, 8, 9])
    check_config_roundtrip(DWGTower(2, [6, 3], D, mode="full", shrinkage_k=1.0, dropout=0.2,
                                    kernel_initializer="he_normal"), [x, idx])
    xi, di = tf.keras.Input([5]), tf.keras.Input([], dtype=tf.int32)
    tower = DWGTower(2, [6, 3], D, mode="residual", shrinkage_k=2.0, delta_scale=0.5)
    assert tower.get_config()["delta_scale"] == 0.5
    model = tf.keras.Model([xi, di], TaskTowers(2, [4])(tower([xi, di])))
    model([x, idx], training=True)
    _randomize(model)
    restored = check_savedmodel(model, [x, idx])
    np.testing.assert_array_equal(
        [v.numpy() for v in restored.variables if "domain_counts" in v.name][0], [6, 6, 6])


# ------------------------------------------------------------------------------ mixed precision
@pytest.mark.parametrize("kwargs", [dict(mode="full", shrinkage_k=3.0),
                                    dict(mode="low_rank", rank=2)])
def test_mixed_precision_close_to_float32(mixed_bf16, kwargs):
    x, idx = _inputs(batch=16)
    ref = DWGTower(2, [8, 4], D, dtype="float32", **kwargs)
    tower = DWGTower(2, [8, 4], D, **kwargs)
    ref([x, idx]), tower([x, idx])
    _randomize(ref)
    tower.set_weights(ref.get_weights())
    assert all(v.dtype in (tf.float32, tf.int64) for v in tower.variables)
    got, want = tower([x, idx]), ref([x, idx])
    assert got[0].dtype == tf.bfloat16 and want[0].dtype == tf.float32
    np.testing.assert_allclose(tf.cast(got[0], tf.float32).numpy(), want[0].numpy(),
                               rtol=0.05, atol=0.05)


# ---------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, message", [
    (dict(units=0), "units must be an integer >= 1, got 0"),
    (dict(num_domains=0), "num_domains must be an integer >= 1, got 0"),
    (dict(num_domains=2.5), "num_domains must be an integer >= 1, got 2.5"),
    (dict(mode="sparse"), "mode must be one of ('full', 'residual', 'low_rank'), got 'sparse'"),
    (dict(mode="low_rank"), "rank must be an integer >= 1, got None"),
    (dict(mode="low_rank", rank=0), "rank must be an integer >= 1, got 0"),
    (dict(rank=4), "rank is only used with mode='low_rank', got rank=4 with mode='full'"),
    (dict(shrinkage_k=-1.0), "shrinkage_k must be a finite number >= 0, got -1.0"),
    (dict(shrinkage_k=float("inf")), "shrinkage_k must be a finite number >= 0, got inf"),
    (dict(initial_counts=[1, 2]), "initial_counts is only used with shrinkage_k > 0"),
    (dict(shrinkage_k=1.0, initial_counts=[1, 2]),
     "initial_counts must be a sequence of num_domains=3 integers >= 0, got [1, 2]"),
    (dict(shrinkage_k=1.0, initial_counts=[1, -2, 3]),
     "initial_counts must be a sequence of num_domains=3 integers >= 0, got [1, -2, 3]"),
    (dict(activation="nope"), "activation is not a known activation, got 'nope'"),
    (dict(delta_regularizer="l2"), "delta_regularizer is not used with mode='full', got 'l2'"),
    (dict(mode="residual", delta_scale=0.0), "delta_scale must be a finite number > 0, got 0.0"),
    (dict(mode="residual", delta_scale=float("nan")),
     "delta_scale must be a finite number > 0, got nan"),
    (dict(delta_scale=0.5), "delta_scale is not used with mode='full' (its domain kernels are "
                            "not deltas), got 0.5"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        DomainDense(**{**dict(units=4, num_domains=3), **kwargs})
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_tasks=0), "num_tasks must be an integer >= 1, got 0"),
    (dict(units=[4, 0]), "units must be a sequence of positive integers, got [4, 0]"),
    (dict(dropout=1.0), "dropout must be a float in [0, 1), got 1.0"),
    (dict(mode="low_rank", rank=-3), "rank must be an integer >= 1, got -3"),
])
def test_tower_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        DWGTower(**{**dict(num_tasks=2, units=[4], num_domains=3), **kwargs})
    assert message in str(err.value)


def test_bad_call_inputs():
    x, idx = _inputs()
    with pytest.raises(ValueError, match=r"expects inputs \[x, domain_index\]"):
        DomainDense(2, D)(x)
    with pytest.raises(ValueError, match=r"expects x of shape \[batch, d\]"):
        DomainDense(2, D)([x[:, :, None], idx])
