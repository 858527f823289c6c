"""GateNU and ParallelGateNU (PEPNet's gate neural unit)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers.gating import GateNU, ParallelGateNU

LN3 = math.log(3.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_golden():
    layer = GateNU(hidden_units=2, output_units=2)
    x = np.array([[1.0, 2.0]], np.float32)
    layer(x)
    # hidden: x W1 = [1, -2] -> relu -> [1, 0]
    layer.hidden.kernel.assign([[1.0, 0.0], [0.0, -1.0]])
    # output logits: [1, 0] W2 + b2 = [ln 3, 0 - ln 3] -> 2 sigmoid = [2 * 3/4, 2 * 1/4]
    layer.output_dense.kernel.assign([[LN3, 5.0], [0.0, 0.0]])
    layer.output_dense.bias.assign([0.0, -5.0 - LN3])
    np.testing.assert_allclose(layer(x).numpy(), [[1.5, 0.5]], rtol=1e-6)
    # scale is the upper bound: scale=1 gives the plain sigmoid
    plain = GateNU(2, 2, scale=1.0)
    plain(x)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(plain(x).numpy(), [[0.75, 0.25]], rtol=1e-6)


def test_zero_weights_give_gate_one():
    layer = GateNU(4, 3, kernel_initializer="zeros")
    out = layer(np.random.default_rng(0).standard_normal([5, 6]).astype(np.float32))
    np.testing.assert_array_equal(out.numpy(), np.ones([5, 3], np.float32))


def test_outputs_in_open_interval_and_shape():
    x = np.random.default_rng(1).normal(0, 3, [256, 8]).astype(np.float32)
    layer = GateNU(16, 5)
    out = layer(x).numpy()
    assert out.shape == (256, 5)
    assert out.min() > 0.0 and out.max() < 2.0
    assert out.std() > 0.01  # not constant: the gate depends on its input
    assert layer.compute_output_shape([None, 8]) == tf.TensorShape([None, 5])
    # any leading axes
    assert GateNU(4, 3)(np.zeros([2, 7, 8], np.float32)).shape == (2, 7, 3)


def test_parallel_matches_single_gates():
    rng = np.random.default_rng(2)
    x = rng.standard_normal([7, 5]).astype(np.float32)
    bank = ParallelGateNU(num_gates=3, hidden_units=4, output_units=6, scale=2.0)
    bank(x)
    bank.set_weights([rng.normal(0, 0.7, w.shape).astype(np.float32)
                      for w in bank.get_weights()])
    k1, b1 = bank.hidden.kernels[0].numpy(), bank.hidden.biases[0].numpy()
    k2, b2 = bank.output_mlp.kernels[0].numpy(), bank.output_mlp.biases[0].numpy()
    shared = bank(x).numpy()
    per_gate = bank(np.stack([x, 2 * x, -x])).numpy()
    assert shared.shape == (3, 7, 6)
    for i, xi in enumerate([x, 2 * x, -x]):
        want = 2.0 * _sigmoid(np.maximum(x @ k1[i] + b1[i], 0.0) @ k2[i] + b2[i])
        np.testing.assert_allclose(shared[i], want, rtol=1e-5, atol=1e-6)
        single = GateNU(4, 6)
        single(xi)
        single.set_weights([k1[i], b1[i], k2[i], b2[i]])
        np.testing.assert_allclose(per_gate[i], single(xi).numpy(), rtol=1e-5, atol=1e-6)
    # the gates start different (each slice its own initializer draw)
    fresh = ParallelGateNU(3, 4, 6)
    fresh(x)
    k = fresh.hidden.kernels[0].numpy()
    assert not np.allclose(k[0], k[1])


def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x = np.random.default_rng(3).standard_normal([5, 6]).astype(np.float32)
    check_config_roundtrip(GateNU(8, 4, scale=3.0, use_bias=False, kernel_regularizer="l2"),
                           x)
    check_config_roundtrip(ParallelGateNU(3, 8, 4, scale=1.5), x)
    inp = tf.keras.Input([6])
    model = tf.keras.Model(inp, [GateNU(8, 4)(inp), ParallelGateNU(2, 3, 5)(inp)])
    check_savedmodel(model, x)


def test_gradients_reach_every_variable(check_gradients):
    x = np.random.default_rng(4).standard_normal([32, 6]).astype(np.float32)
    check_gradients(GateNU(8, 4), x)
    check_gradients(ParallelGateNU(3, 8, 4), x)


def test_mixed_precision_close_to_float32(mixed_bf16):
    x = np.random.default_rng(5).standard_normal([16, 6]).astype(np.float32)
    for make in (lambda **kw: GateNU(8, 4, **kw), lambda **kw: ParallelGateNU(2, 8, 4, **kw)):
        ref, layer = make(dtype="float32"), make()
        ref(x), layer(x)
        layer.set_weights(ref.get_weights())
        assert all(v.dtype == tf.float32 for v in layer.variables)
        got, want = layer(x), ref(x)
        assert got.dtype == tf.bfloat16 and want.dtype == tf.float32
        np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want.numpy(), atol=0.03)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hidden_units=0), "hidden_units must be an integer >= 1, got 0"),
    (dict(hidden_units=2.5), "hidden_units must be an integer >= 1, got 2.5"),
    (dict(output_units=-3), "output_units must be an integer >= 1, got -3"),
    (dict(scale=0.0), "scale must be a finite number > 0, got 0.0"),
    (dict(scale=float("inf")), "scale must be a finite number > 0, got inf"),
    (dict(scale="2"), "scale must be a finite number > 0, got '2'"),
    (dict(activation="nope"), "activation is not a known activation, got 'nope'"),
    (dict(kernel_initializer="nope"), "kernel_initializer is not a known initializer"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        GateNU(**{**dict(hidden_units=4, output_units=3), **kwargs})
    assert message in str(err.value)
    with pytest.raises(ValueError) as err:
        ParallelGateNU(**{**dict(num_gates=2, hidden_units=4, output_units=3), **kwargs})
    assert message in str(err.value)


def test_bad_num_gates_and_shapes():
    with pytest.raises(ValueError, match="num_gates must be an integer >= 1, got 0"):
        ParallelGateNU(0, 4, 3)
    with pytest.raises(ValueError, match="ParallelGateNU expects inputs"):
        ParallelGateNU(2, 4, 3)(np.zeros([2, 3, 4, 5], np.float32))
