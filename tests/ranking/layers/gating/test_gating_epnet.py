"""EPNet: the general embedding gated by a Gate NU of domain-side features."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers.gating import EPNet

LN3 = math.log(3.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _random_weights(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def _reference(layer, e, side):
    """E * 2 sigmoid(relu([side, E] W1 + b1) W2 + b2), numpy."""
    w1, b1, w2, b2 = layer.gate.get_weights()
    g_in = np.concatenate([side, e], -1) if layer.gate_with_input else side
    gate = layer.scale * _sigmoid(np.maximum(g_in @ w1 + b1, 0.0) @ w2 + b2)
    if layer.field_dims is not None:
        gate = np.repeat(gate, layer.field_dims, axis=-1)
    return e * gate


def test_golden():
    layer = EPNet(gate_hidden_units=1)
    e = np.array([[1.0, 2.0, 3.0]], np.float32)
    side = np.array([[1.0]], np.float32)
    layer([e, side])
    # gate input = [side, stop_gradient(E)] = [1, 1, 2, 3]; hidden = relu(1 + 0.5 * 3) = 2.5
    layer.gate.hidden.kernel.assign([[1.0], [0.0], [0.0], [0.5]])
    # logits = 2.5 * [0, ln3 / 2.5, -ln3 / 2.5] = [0, ln 3, -ln 3] -> gate [1, 1.5, 0.5]
    layer.gate.output_dense.kernel.assign([[0.0, LN3 / 2.5, -LN3 / 2.5]])
    np.testing.assert_allclose(layer.gates([e, side]).numpy(), [[1.0, 1.5, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(layer([e, side]).numpy(), [[1.0, 3.0, 1.5]], rtol=1e-6)


def test_field_gates_repeat_over_field_units():
    layer = EPNet(1, field_dims=[1, 2])
    e = np.array([[1.0, 2.0, 3.0]], np.float32)
    side = np.array([[1.0]], np.float32)
    layer([e, side])
    assert layer.gate.output_units == 2
    layer.gate.hidden.kernel.assign([[1.0], [0.0], [0.0], [0.0]])  # hidden = 1
    layer.gate.output_dense.kernel.assign([[LN3, -LN3]])  # gates [1.5, 0.5]
    np.testing.assert_allclose(layer([e, side]).numpy(), [[1.5, 1.0, 1.5]], rtol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(), dict(gate_with_input=False),
                                    dict(field_dims=[2, 3, 1])])
def test_matches_reference_with_side_feature_lists(kwargs):
    rng = np.random.default_rng(1)
    e = rng.standard_normal([9, 6]).astype(np.float32)
    s1, s2 = rng.standard_normal([9, 2]).astype(np.float32), rng.standard_normal(
        [9, 3]).astype(np.float32)
    layer = EPNet(5, **kwargs)
    layer([e, [s1, s2]])
    _random_weights(layer)
    want = _reference(layer, e, np.concatenate([s1, s2], -1))
    np.testing.assert_allclose(layer([e, [s1, s2]]).numpy(), want, rtol=1e-5, atol=1e-6)
    expected_in = 5 + (6 if layer.gate_with_input else 0)
    assert layer.gate.hidden.kernel.shape == (expected_in, 5)


def test_zero_gate_weights_make_identity_and_gates_in_range():
    rng = np.random.default_rng(2)
    e = rng.normal(0, 1, [64, 6]).astype(np.float32)
    side = rng.normal(0, 1, [64, 4]).astype(np.float32)
    ident = EPNet(8, kernel_initializer="zeros")
    np.testing.assert_array_equal(ident([e, side]).numpy(), e)
    gates = EPNet(8)
    gates([e, side])
    _random_weights(gates, 3)
    g = gates.gates([e, side]).numpy()
    assert g.min() > 0.0 and g.max() < 2.0 and g.std() > 0.01


def test_stop_gradient_blocks_the_gate_path():
    rng = np.random.default_rng(4)
    e = tf.constant(rng.standard_normal([8, 5]).astype(np.float32))
    side = tf.constant(rng.standard_normal([8, 3]).astype(np.float32))
    layer = EPNet(6)
    layer([e, side])
    _random_weights(layer, 5)
    r = tf.constant(rng.standard_normal([8, 5]).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([e, side])
        gates = layer.gates([e, side])
        out = layer([e, side])
        gate_only = tf.reduce_sum(gates * r)
        loss = tf.reduce_sum(out * r)
    # The gate reads E only through stop_gradient: no gradient into E from the gate path ...
    assert tape.gradient(gate_only, e) is None
    assert tape.gradient(gate_only, side) is not None
    # ... so d(sum(r * E * gate)) / dE is just r * gate (the gate acts as a constant).
    np.testing.assert_allclose(tape.gradient(loss, e).numpy(), (r * gates).numpy(),
                               rtol=1e-6, atol=1e-7)
    # The domain-side features are trained through the gate.
    assert np.any(tape.gradient(loss, side).numpy() != 0)
    # Without the stop-gradient the gradient would differ: the check above can fail.
    with tf.GradientTape() as tape2:
        tape2.watch(e)
        leaky = tf.reduce_sum(e * layer.gate(tf.concat([side, e], -1)) * r)
    assert not np.allclose(tape2.gradient(leaky, e).numpy(), (r * gates).numpy(), atol=1e-4)


def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    rng = np.random.default_rng(6)
    e = rng.standard_normal([5, 6]).astype(np.float32)
    s1, s2 = rng.standard_normal([5, 2]).astype(np.float32), rng.standard_normal(
        [5, 1]).astype(np.float32)
    check_config_roundtrip(EPNet(4, field_dims=[4, 2], scale=1.5, gate_with_input=False,
                                 kernel_regularizer="l2"), [e, [s1, s2]])
    ie, i1, i2 = tf.keras.Input([6]), tf.keras.Input([2]), tf.keras.Input([1])
    model = tf.keras.Model([ie, i1, i2], EPNet(4)([ie, [i1, i2]]))
    check_savedmodel(model, [e, s1, s2])


def test_gradients_reach_every_variable(check_gradients):
    rng = np.random.default_rng(7)
    e = rng.standard_normal([32, 6]).astype(np.float32)
    side = rng.standard_normal([32, 3]).astype(np.float32)
    check_gradients(EPNet(8), [e, side])
    check_gradients(EPNet(8, field_dims=[3, 3]), [e, side])


def test_mixed_precision_close_to_float32(mixed_bf16):
    rng = np.random.default_rng(8)
    e = rng.standard_normal([16, 6]).astype(np.float32)
    side = rng.standard_normal([16, 3]).astype(np.float32)
    ref, layer = EPNet(8, dtype="float32"), EPNet(8)
    ref([e, side]), layer([e, side])
    layer.set_weights(ref.get_weights())
    assert all(v.dtype == tf.float32 for v in layer.variables)
    got, want = layer([e, side]), ref([e, side])
    assert got.dtype == tf.bfloat16 and want.dtype == tf.float32
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), want.numpy(),
                               rtol=0.03, atol=0.03)


@pytest.mark.parametrize("kwargs, message", [
    (dict(gate_hidden_units=0), "gate_hidden_units must be an integer >= 1, got 0"),
    (dict(field_dims=[2, 0]), "field_dims must be None or a non-empty sequence of positive "
                              "integers, got [2, 0]"),
    (dict(field_dims=[]), "field_dims must be None or a non-empty sequence of positive "
                          "integers, got []"),
    (dict(scale=-1), "scale must be a finite number > 0, got -1"),
    (dict(gate_activation="nope"), "gate_activation is not a known activation, got 'nope'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        EPNet(**{**dict(gate_hidden_units=4), **kwargs})
    assert message in str(err.value)


def test_bad_inputs():
    e, side = np.zeros([2, 6], np.float32), np.zeros([2, 3], np.float32)
    with pytest.raises(ValueError, match="field_dims \\[2, 2\\] sum to 4, but the general "
                                         "embedding has width 6"):
        EPNet(4, field_dims=[2, 2])([e, side])
    with pytest.raises(ValueError, match="EPNet expects inputs"):
        EPNet(4)(e)
    with pytest.raises(ValueError, match="EPNet expects inputs"):
        EPNet(4)([e, side, side])
    with pytest.raises(ValueError, match="domain_side_features must be \\[batch, d\\]"):
        EPNet(4)([e, np.zeros([2, 3, 1], np.float32)])
    with pytest.raises(ValueError, match="domain_side_features must not be empty"):
        EPNet(4)([e, np.zeros([2, 0], np.float32)])
