"""MMoE: fused experts and gates against hand-computed values and a per-expert reference."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import MMoE, TaskTowers


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _reference(layer, x):
    """Straightforward MMoE: loop over experts, one gate per task, weighted sum."""
    kernels = [k.numpy() for k in layer.experts.kernels]
    biases = [b.numpy() for b in layer.experts.biases]
    experts = []
    for e in range(layer.num_experts):
        h = x
        for k, b in zip(kernels, biases):
            h = np.maximum(h @ k[e] + b[e], 0.0)
        experts.append(h)
    outs = []
    for t in range(layer.num_tasks):
        logits = x @ layer.gate_kernel.numpy()[t]
        if layer.gate_bias is not None:
            logits = logits + layer.gate_bias.numpy()[t]
        gate = _softmax(logits) if layer.gate_activation == "softmax" else 1 / (1 + np.exp(-logits))
        outs.append(sum(gate[:, e:e + 1] * experts[e] for e in range(layer.num_experts)))
    return outs


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


@pytest.mark.parametrize("gate_activation, want", [
    # softmax: task 0 row 1: gate softmax([ln3, 0]) = [3/4, 1/4] -> 0.75*1 + 0.25*2.5 = 1.375
    #                  row 2: gate softmax([2 ln3, 0]) = [9/10, 1/10] -> 0.9*2 + 0.1*1.5 = 1.95
    #          task 1: gate [1/2, 1/2] -> row 1: (1 + 2.5)/2 = 1.75; row 2: (2 + 1.5)/2 = 1.75
    ("softmax", [[[1.375], [1.95]], [[1.75], [1.75]]]),
    # sigmoid: task 0 row 1: [s(ln3), s(0)] = [3/4, 1/2] -> 0.75*1 + 0.5*2.5 = 2.0
    #                 row 2: [s(2 ln3), 1/2] = [9/10, 1/2] -> 0.9*2 + 0.5*1.5 = 2.55
    #          task 1: [1/2, 1/2] -> row 1: 1.75; row 2: 1.75
    ("sigmoid", [[[2.0], [2.55]], [[1.75], [1.75]]]),
])
def test_golden(gate_activation, want):
    layer = MMoE(num_tasks=2, num_experts=2, expert_units=[1], gate_activation=gate_activation)
    x = np.array([[1.0, 2.0], [2.0, 1.0]], np.float32)
    layer(x)
    # expert 0 = relu(x1); expert 1 = relu(x2 + 0.5)
    # row 1 (x = [1, 2]): experts [1, 2.5]; row 2 (x = [2, 1]): experts [2, 1.5]
    layer.experts.kernels[0].assign([[[1.0], [0.0]], [[0.0], [1.0]]])
    layer.experts.biases[0].assign([[0.0], [0.5]])
    # gate logits: task 0 = [ln3 * x1, 0], task 1 = [0, 0]
    layer.gate_kernel.assign([[[math.log(3.0), 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    got = [o.numpy() for o in layer(x)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("gate_activation, gate_use_bias", [("softmax", False),
                                                            ("sigmoid", True)])
def test_fused_matches_per_expert_reference(gate_activation, gate_use_bias):
    x = np.random.default_rng(1).standard_normal([9, 7]).astype(np.float32)
    layer = MMoE(3, 4, [6, 5], gate_activation=gate_activation, gate_use_bias=gate_use_bias)
    layer(x)
    _randomize(layer)
    for got, want in zip(layer(x), _reference(layer, x)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_identical_experts():
    layer = MMoE(2, 3, [8, 4], identical_experts=True)
    x = np.random.default_rng(4).standard_normal([6, 5]).astype(np.float32)
    got = layer(x)
    ks = [k.numpy() for k in layer.experts.kernels]
    bs = [b.numpy() for b in layer.experts.biases]
    for k in ks:
        np.testing.assert_array_equal(k[1], k[0])
        np.testing.assert_array_equal(k[2], k[0])
    h = np.maximum(np.maximum(x @ ks[0][0] + bs[0][0], 0) @ ks[1][0] + bs[1][0], 0)
    for g in got:  # softmax mix of equal experts = that expert
        np.testing.assert_allclose(g.numpy(), h, rtol=1e-5, atol=1e-6)
    assert MMoE.from_config(layer.get_config()).experts.identical_init


def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x = np.random.default_rng(2).standard_normal([5, 6]).astype(np.float32)
    clone = check_config_roundtrip(
        MMoE(2, 3, [8, 4], gate_activation="sigmoid", gate_use_bias=True, expert_dropout=0.1,
             kernel_regularizer="l2"), x)
    assert clone.gate_bias is not None and len(clone.losses) == 3  # experts x2 + gate kernel
    inp = tf.keras.Input([6])
    model = tf.keras.Model(inp, TaskTowers(2, [3])(MMoE(2, 3, [8, 4])(inp)))
    check_savedmodel(model, x)


def test_gradients_reach_every_variable(check_gradients):
    x = np.random.default_rng(3).standard_normal([32, 6]).astype(np.float32)
    check_gradients(MMoE(2, 3, [8, 4], gate_use_bias=True), x)


def test_mixed_precision_close_to_float32(mixed_bf16):
    x = np.random.default_rng(4).standard_normal([16, 6]).astype(np.float32)
    ref = MMoE(2, 3, [8, 4], dtype="float32")
    layer = MMoE(2, 3, [8, 4])
    ref(x), layer(x)
    layer.set_weights(ref.get_weights())
    assert all(v.dtype == tf.float32 for v in layer.variables)
    got, want = layer(x), ref(x)
    assert got[0].dtype == tf.bfloat16 and want[0].dtype == tf.float32
    for g, w in zip(got, want):
        np.testing.assert_allclose(tf.cast(g, tf.float32).numpy(), w.numpy(),
                                   rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_tasks=0), "num_tasks must be an integer >= 1, got 0"),
    (dict(num_experts=0), "num_experts must be an integer >= 1, got 0"),
    (dict(num_experts=2.0), "num_experts must be an integer >= 1, got 2.0"),
    (dict(expert_units=[]), "expert_units must not be empty, got []"),
    (dict(gate_activation="relu"),
     "gate_activation must be one of ('softmax', 'sigmoid'), got 'relu'"),
    (dict(expert_dropout=1.5), "expert_dropout must be a float in [0, 1), got 1.5"),
])
def test_bad_arguments(kwargs, message):
    args = dict(num_tasks=2, num_experts=2, expert_units=[4])
    with pytest.raises(ValueError) as err:
        MMoE(**{**args, **kwargs})
    assert message in str(err.value)
