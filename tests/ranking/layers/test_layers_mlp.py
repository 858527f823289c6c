"""MLP, ParallelMLP (fused expert bank) and TaskTowers."""
import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import MLP, ParallelMLP, TaskTowers


def _relu(x):
    return np.maximum(x, 0.0)


def _random_weights(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def _parallel_reference(layer, inputs):
    """Per-MLP loop: MLP i = its kernel/bias slices applied one after another."""
    kernels = [k.numpy() for k in layer.kernels]
    biases = [b.numpy() for b in layer.biases]
    outs = []
    for i in range(layer.num_mlps):
        h = inputs if inputs.ndim == 2 else inputs[i]
        for k, b in zip(kernels, biases):
            h = _relu(h @ k[i] + b[i])
        outs.append(h)
    return np.stack(outs)


# --------------------------------------------------------------------------------- golden values
def test_mlp_golden():
    layer = MLP([2, 1])
    x = np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32)
    layer(x)
    layer.set_weights([np.array([[1.0, -1.0], [0.5, 2.0]]), np.array([0.0, 1.0]),
                       np.array([[1.0], [-0.5]]), np.array([0.5])])
    # layer 1: row 1: [1*1 + 2*0.5, 1*-1 + 2*2] + [0, 1] = [2, 4]      -> relu [2, 4]
    #          row 2: [-1 + 0.25, 1 + 1] + [0, 1]       = [-0.75, 3]   -> relu [0, 3]
    # layer 2: row 1: 2*1 + 4*-0.5 + 0.5 = 0.5; row 2: 0 + 3*-0.5 + 0.5 = -1 -> relu 0
    np.testing.assert_allclose(layer(x).numpy(), [[0.5], [0.0]], atol=1e-6)


def test_parallel_mlp_golden_shared_and_per_mlp_inputs():
    layer = ParallelMLP(2, [1])
    layer(np.zeros([1, 2], np.float32))
    layer.kernels[0].assign([[[1.0], [1.0]], [[-1.0], [0.0]]])  # [2 MLPs, d=2, 1]
    layer.biases[0].assign([[0.5], [0.0]])
    # shared x = [1, 2]: MLP 0: 1 + 2 + 0.5 = 3.5; MLP 1: relu(-1) = 0
    got = layer(np.array([[1.0, 2.0]], np.float32)).numpy()
    np.testing.assert_allclose(got, [[[3.5]], [[0.0]]], atol=1e-6)
    # per-MLP inputs: MLP 0 reads [1, 2] -> 3.5; MLP 1 reads [-3, 1] -> relu(3) = 3
    got = layer(np.array([[[1.0, 2.0]], [[-3.0, 1.0]]], np.float32)).numpy()
    np.testing.assert_allclose(got, [[[3.5]], [[3.0]]], atol=1e-6)


def test_task_towers_golden():
    towers = TaskTowers(2, units=[1])
    r0, r1 = np.array([[1.0, 1.0]], np.float32), np.array([[3.0, 4.0]], np.float32)
    towers([r0, r1])
    towers.hidden.kernels[0].assign([[[1.0], [1.0]], [[1.0], [-1.0]]])
    towers.hidden.biases[0].assign([[0.0], [0.0]])
    towers.logit.kernels[0].assign([[[2.0]], [[5.0]]])
    towers.logit.biases[0].assign([[-1.0], [0.25]])
    # task 0: hidden relu(1 + 1) = 2, logit 2*2 - 1 = 3
    # task 1: hidden relu(3 - 4) = 0, logit 5*0 + 0.25 = 0.25 (no activation on the logit)
    l0, l1 = towers([r0, r1])
    assert l0.dtype == l1.dtype == tf.float32 and l0.shape == (1, 1)
    np.testing.assert_allclose([l0.numpy(), l1.numpy()], [[[3.0]], [[0.25]]], atol=1e-6)


def test_task_towers_linear_golden():
    towers = TaskTowers(2)  # no hidden layer: logit_t = r_t . w_t + b_t
    r0, r1 = np.array([[1.0, 1.0]], np.float32), np.array([[3.0, 4.0]], np.float32)
    towers([r0, r1])
    towers.logit.kernels[0].assign([[[1.0], [2.0]], [[0.0], [-1.0]]])
    towers.logit.biases[0].assign([[0.5], [0.0]])
    # task 0: 1 + 2 + 0.5 = 3.5; task 1: -4 + 0 = -4 (negative: no relu)
    l0, l1 = towers([r0, r1])
    np.testing.assert_allclose([l0.numpy(), l1.numpy()], [[[3.5]], [[-4.0]]], atol=1e-6)


# ------------------------------------------------------------------------ fused == reference
@pytest.mark.parametrize("per_mlp_input", [False, True])
def test_parallel_mlp_matches_per_mlp_reference(per_mlp_input):
    rng = np.random.default_rng(1)
    layer = ParallelMLP(3, [5, 4])
    x = rng.standard_normal([3, 7, 6] if per_mlp_input else [7, 6]).astype(np.float32)
    layer(x)
    _random_weights(layer)
    np.testing.assert_allclose(layer(x).numpy(), _parallel_reference(layer, x),
                               rtol=1e-5, atol=1e-5)


def test_task_towers_match_per_task_reference_and_shared_input_path():
    rng = np.random.default_rng(2)
    towers = TaskTowers(3, units=[4, 2])
    reps = [rng.standard_normal([5, 6]).astype(np.float32) for _ in range(3)]
    towers(reps)
    _random_weights(towers)
    hidden = _parallel_reference(towers.hidden, np.stack(reps))
    want = np.einsum("tbh,thk->tbk", hidden, towers.logit.kernels[0].numpy()) \
        + towers.logit.biases[0].numpy()[:, None, :]
    got = towers(reps)
    np.testing.assert_allclose(np.stack(got), want, rtol=1e-5, atol=1e-5)
    # One tensor shared by every task (SharedBottom) takes the fused first-layer path.
    shared = tf.constant(reps[0])
    np.testing.assert_allclose(np.stack(towers([shared] * 3)),
                               np.stack(towers([reps[0]] * 3)), rtol=1e-6, atol=1e-6)


def test_parallel_mlp_initializer_per_slice():
    layer = ParallelMLP(4, [300, 200])
    layer(np.zeros([1, 100], np.float32))
    k0 = layer.kernels[0].numpy()
    # each slice is its own glorot_uniform [100, 300] draw: limit sqrt(6 / 400) ...
    assert np.abs(k0).max() <= np.sqrt(6 / 400) + 1e-6
    np.testing.assert_allclose(k0.std(axis=(1, 2)), np.sqrt(2 / 400), rtol=0.05)
    # ... and the experts do not start identical (tf.keras repeats an instance's values)
    assert not np.allclose(k0[0], k0[1])
    seeded = ParallelMLP(2, [3], kernel_initializer=tf.keras.initializers.GlorotUniform(7))
    seeded(np.zeros([1, 3], np.float32))
    assert not np.allclose(seeded.kernels[0][0], seeded.kernels[0][1])


def test_parallel_mlp_identical_init_copies_one_draw_per_layer():
    layer = ParallelMLP(4, [300, 200], identical_init=True)
    layer(np.zeros([1, 100], np.float32))
    for kernel, fans in zip(layer.kernels, [(100, 300), (300, 200)]):
        k = kernel.numpy()
        for i in range(1, 4):
            np.testing.assert_array_equal(k[i], k[0])
        # the copied slice is one glorot_uniform draw of the 2-D slice shape
        assert np.abs(k).max() <= np.sqrt(6 / sum(fans)) + 1e-6
        np.testing.assert_allclose(k[0].std(), np.sqrt(2 / sum(fans)), rtol=0.05)
    assert not np.allclose(layer.kernels[0].numpy()[0, :, :200], layer.kernels[1].numpy()[0, :100])
    # so every MLP computes the same function at initialization
    x = np.random.default_rng(0).standard_normal([5, 100]).astype(np.float32)
    out = layer(x).numpy()
    want = _relu(_relu(x @ layer.kernels[0].numpy()[0]) @ layer.kernels[1].numpy()[0])
    for i in range(4):
        np.testing.assert_allclose(out[i], want, rtol=1e-5, atol=1e-6)
    seeded = ParallelMLP(3, [4], kernel_initializer=tf.keras.initializers.GlorotUniform(7),
                         identical_init=True)
    seeded(np.zeros([1, 3], np.float32))
    np.testing.assert_array_equal(seeded.kernels[0][2], seeded.kernels[0][0])
    np.testing.assert_array_equal(seeded.kernels[0][0],
                                  tf.keras.initializers.GlorotUniform(7)([3, 4]))


def test_mlp_layers_do_not_share_initial_values():
    layer = MLP([4, 4, 4])
    layer(np.zeros([1, 4], np.float32))
    k1, k2 = layer.dense_layers[1].kernel.numpy(), layer.dense_layers[2].kernel.numpy()
    assert not np.allclose(k1, k2)


def test_dropout_only_when_training():
    layer = ParallelMLP(2, [64], dropout=0.5)
    x = np.ones([8, 4], np.float32)
    assert np.array_equal(layer(x, training=False).numpy(), layer(x).numpy())
    assert not np.array_equal(layer(x, training=True).numpy(), layer(x).numpy())
    mlp = MLP([64], dropout=0.5)
    assert not np.array_equal(mlp(x, training=True).numpy(), mlp(x).numpy())


# ------------------------------------------------------------------- config / SavedModel
def test_config_roundtrip(check_config_roundtrip):
    x = np.random.default_rng(3).standard_normal([4, 6]).astype(np.float32)
    check_config_roundtrip(MLP([5, 3], activation="tanh", dropout=0.1,
                               kernel_regularizer="l2"), x)
    check_config_roundtrip(ParallelMLP(3, [5, 3], activation=None, use_bias=False), x)
    assert check_config_roundtrip(ParallelMLP(2, [3], identical_init=True), x).identical_init
    towers = check_config_roundtrip(TaskTowers(2, [4], dropout=0.2), [x, 2 * x])
    assert towers.units == [4] and towers.num_tasks == 2


def test_savedmodel_roundtrip(check_savedmodel):
    inp = tf.keras.Input([6])
    hidden = MLP([8, 4])(inp)
    logits = TaskTowers(2, [3])([hidden, hidden * 2.0])
    model = tf.keras.Model(inp, logits)
    x = np.random.default_rng(4).standard_normal([5, 6]).astype(np.float32)
    check_savedmodel(model, x)


# ------------------------------------------------------------------------------ gradients
def test_gradients_reach_every_variable(check_gradients):
    x = np.random.default_rng(5).standard_normal([16, 6]).astype(np.float32)
    check_gradients(ParallelMLP(3, [5, 4]), x)
    check_gradients(MLP([5, 4]), x)
    check_gradients(TaskTowers(2, [4, 3]), [x, x[::-1].copy()])


# ------------------------------------------------------------------------- mixed precision
def test_task_towers_mixed_precision(mixed_bf16):
    rng = np.random.default_rng(6)
    reps = [rng.standard_normal([16, 8]).astype(np.float32) for _ in range(2)]
    ref = TaskTowers(2, [16], dtype="float32")
    ref(reps)
    assert ref.hidden.compute_dtype == "float32"
    towers = TaskTowers(2, [16])
    towers(reps)
    towers.set_weights(ref.get_weights())
    assert towers.hidden.compute_dtype == "bfloat16"
    assert all(v.dtype == tf.float32 for v in towers.variables)
    got = towers(reps)
    assert all(g.dtype == tf.float32 for g in got)
    for g, w in zip(got, ref(reps)):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=0.05, atol=0.05)


def test_parallel_mlp_mixed_precision_computes_in_bf16(mixed_bf16):
    x = np.random.default_rng(7).standard_normal([4, 8]).astype(np.float32)
    layer = ParallelMLP(2, [8, 4])
    assert layer(x).dtype == tf.bfloat16
    assert layer(np.stack([x, x])).dtype == tf.bfloat16


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("make, message", [
    (lambda: MLP([]), "units must not be empty, got []"),
    (lambda: MLP([4, 0]), "units must be a sequence of positive integers, got [4, 0]"),
    (lambda: MLP("64"), "units must be a sequence of positive integers, got '64'"),
    (lambda: MLP([4], dropout=1.0), "dropout must be a float in [0, 1), got 1.0"),
    (lambda: MLP([4], activation="nope"), "activation is not a known activation, got 'nope'"),
    (lambda: ParallelMLP(0, [4]), "num_mlps must be an integer >= 1, got 0"),
    (lambda: ParallelMLP(True, [4]), "num_mlps must be an integer >= 1, got True"),
    (lambda: ParallelMLP(2, [4], dropout=-0.1), "dropout must be a float in [0, 1), got -0.1"),
    (lambda: ParallelMLP(2, [4], kernel_initializer="nope"),
     "kernel_initializer is not a known initializer, got 'nope'"),
    (lambda: TaskTowers(0), "num_tasks must be an integer >= 1, got 0"),
    (lambda: TaskTowers(2, [2.5]), "units must be a sequence of positive integers, got [2.5]"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)


def test_task_towers_wrong_number_of_inputs():
    with pytest.raises(ValueError, match="num_tasks=3 got 2 inputs"):
        TaskTowers(3)([np.zeros([1, 2], np.float32)] * 2)
