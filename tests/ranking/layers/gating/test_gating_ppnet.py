"""PPNetTower (gated per-task towers) and PEPNet (EPNet + PPNet)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import TaskTowers
from ranking.layers.gating import EPNet, PEPNet, PPNetTower

LN3 = math.log(3.0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _random_weights(layer, seed=0, std=0.5):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, std, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def _bank_gate(bank, i, g):
    """Gate i of a ParallelGateNU, numpy."""
    k1, b1 = bank.hidden.kernels[0].numpy()[i], bank.hidden.biases[0].numpy()[i]
    k2, b2 = bank.output_mlp.kernels[0].numpy()[i], bank.output_mlp.biases[0].numpy()[i]
    return bank.scale * _sigmoid(np.maximum(g @ k1 + b1, 0.0) @ k2 + b2)


def _reference_gates(layer, x, personal):
    """Per task, the list of gates [input gate,] layer-1 gate, ..., numpy."""
    g = np.concatenate([personal, x], -1) if layer.gate_with_input else personal
    banks = ([layer.input_gates] if layer.gate_tower_input else []) + list(layer.gate_banks)
    return [[_bank_gate(bank, t, g) for bank in banks] for t in range(layer.num_tasks)]


def _reference(layer, x, personal):
    """PPNet one task and one layer at a time: h_l = relu(h_{l-1} W + b) * GateNU_{t,l}."""
    outs = []
    for t, gates in enumerate(_reference_gates(layer, x, personal)):
        h = x
        if layer.gate_tower_input:
            h, gates = h * gates[0], gates[1:]
        for mlp, gate in zip(layer.hidden_layers, gates):
            h = np.maximum(h @ mlp.kernels[0].numpy()[t] + mlp.biases[0].numpy()[t], 0) * gate
        outs.append(h)
    return outs


def test_golden():
    layer = PPNetTower(num_tasks=2, units=[1], gate_hidden_units=1)
    x = np.array([[1.0, 2.0]], np.float32)
    personal = np.array([[1.0]], np.float32)
    layer([x, personal])
    # towers: task 0 relu(1 + 2) = 3; task 1 relu(1 - 2 + 2) = 1
    layer.hidden_layers[0].kernels[0].assign([[[1.0], [1.0]], [[1.0], [-1.0]]])
    layer.hidden_layers[0].biases[0].assign([[0.0], [2.0]])
    # gate input [personal, stop_gradient(x)] = [1, 1, 2]
    gates = layer.gate_banks[0]
    # task 0: hidden relu(personal) = 1, logit ln 3 -> gate 2 * 3/4 = 1.5 -> out 3 * 1.5
    # task 1: hidden relu(x2) = 2, logit 2 * (-ln3 / 2) -> gate 2 * 1/4 = 0.5 -> out 1 * 0.5
    gates.hidden.kernels[0].assign([[[1.0], [0.0], [0.0]], [[0.0], [0.0], [1.0]]])
    gates.output_mlp.kernels[0].assign([[[LN3]], [[-LN3 / 2]]])
    out0, out1 = layer([x, personal])
    np.testing.assert_allclose(out0.numpy(), [[4.5]], rtol=1e-6)
    np.testing.assert_allclose(out1.numpy(), [[0.5]], rtol=1e-6)
    g = layer.gates([x, personal])
    np.testing.assert_allclose(g[0].numpy(), [[[1.5]], [[0.5]]], rtol=1e-6)


@pytest.mark.parametrize("tasks, units, kwargs", [
    (2, [6, 4], dict()),
    (3, [5], dict(gate_with_input=False)),
    (2, [6, 5, 3], dict(gate_tower_input=True)),
])
def test_fused_matches_per_task_reference(tasks, units, kwargs):
    rng = np.random.default_rng(1)
    x = rng.standard_normal([9, 7]).astype(np.float32)
    p1, p2 = rng.standard_normal([9, 2]).astype(np.float32), rng.standard_normal(
        [9, 3]).astype(np.float32)
    layer = PPNetTower(tasks, units, gate_hidden_units=4, **kwargs)
    layer([x, [p1, p2]])
    _random_weights(layer)
    got = layer([x, [p1, p2]])
    assert len(got) == tasks and all(g.shape == (9, units[-1]) for g in got)
    for g, w in zip(got, _reference(layer, x, np.concatenate([p1, p2], -1))):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5)


def test_gates_in_open_interval_and_distinct_per_task_and_layer():
    rng = np.random.default_rng(2)
    x = rng.standard_normal([64, 6]).astype(np.float32)
    personal = rng.standard_normal([64, 4]).astype(np.float32)
    layer = PPNetTower(2, [5, 5], 8, gate_tower_input=True)
    layer([x, personal])
    gates = [g.numpy() for g in layer.gates([x, personal])]
    assert [g.shape for g in gates] == [(2, 64, 6), (2, 64, 5), (2, 64, 5)]
    for g in gates:
        assert g.min() > 0.0 and g.max() < 2.0 and g.std() > 1e-3
        assert not np.allclose(g[0], g[1])  # each task has its own gate
    assert not np.allclose(gates[1], gates[2])  # each layer has its own gate


def test_zero_gate_weights_give_the_plain_towers():
    rng = np.random.default_rng(3)
    x = rng.standard_normal([8, 6]).astype(np.float32)
    personal = rng.standard_normal([8, 2]).astype(np.float32)
    layer = PPNetTower(2, [5, 3], 4, kernel_initializer="zeros")
    layer([x, personal])
    for mlp in layer.hidden_layers:  # random towers, zero gates (gate = 1)
        _random_weights(mlp, 4)
    want, h = [], x
    for t in range(2):
        h = x
        for mlp in layer.hidden_layers:
            h = np.maximum(h @ mlp.kernels[0].numpy()[t] + mlp.biases[0].numpy()[t], 0.0)
        want.append(h)
    for g, w in zip(layer([x, personal]), want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gate_tower_input", [False, True])
def test_stop_gradient_blocks_the_gate_path(gate_tower_input):
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal([8, 6]).astype(np.float32))
    personal = tf.constant(rng.standard_normal([8, 3]).astype(np.float32))
    layer = PPNetTower(2, [5, 4], 6, gate_tower_input=gate_tower_input)
    layer([x, personal])
    _random_weights(layer, 6)
    r = [tf.constant(rng.standard_normal([8, 4]).astype(np.float32)) for _ in range(2)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, personal])
        gates = layer.gates([x, personal])
        gate_only = tf.add_n([tf.reduce_sum(g) for g in gates])
        loss = tf.add_n([tf.reduce_sum(o * ri) for o, ri in zip(layer([x, personal]), r)])
    assert tape.gradient(gate_only, x) is None  # the gates read x through stop_gradient
    assert tape.gradient(gate_only, personal) is not None
    grad_x = tape.gradient(loss, x).numpy()
    assert np.any(tape.gradient(loss, personal).numpy() != 0)  # personal trained via gates

    def towers_with_constant_gates(xv, gate_values):
        outs = []
        for t in range(2):
            g = [gv[t] for gv in gate_values]
            h = xv
            if gate_tower_input:
                h, g = h * g[0], g[1:]
            for mlp, gl in zip(layer.hidden_layers, g):
                h = tf.nn.relu(h @ mlp.kernels[0][t] + mlp.biases[0][t]) * gl
            outs.append(h)
        return tf.add_n([tf.reduce_sum(o * ri) for o, ri in zip(outs, r)])

    # Reference: gates held constant -> the gradient reaches x through the towers only.
    constant = [tf.constant(g.numpy()) for g in gates]
    with tf.GradientTape() as ref_tape:
        ref_tape.watch(x)
        ref = towers_with_constant_gates(x, constant)
    np.testing.assert_allclose(grad_x, ref_tape.gradient(ref, x).numpy(), rtol=1e-5,
                               atol=1e-6)
    # Without stop_gradient the gradient would differ, so the check above can fail.
    with tf.GradientTape() as leaky_tape:
        leaky_tape.watch(x)
        g_in = tf.concat([personal, x], -1)
        banks = ([layer.input_gates] if gate_tower_input else []) + list(layer.gate_banks)
        leaky = towers_with_constant_gates(x, [bank(g_in) for bank in banks])
    assert not np.allclose(leaky_tape.gradient(leaky, x).numpy(), grad_x, atol=1e-4)


def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    rng = np.random.default_rng(7)
    x = rng.standard_normal([5, 6]).astype(np.float32)
    p1, p2 = rng.standard_normal([5, 2]).astype(np.float32), rng.standard_normal(
        [5, 3]).astype(np.float32)
    check_config_roundtrip(PPNetTower(2, [8, 4], 3, scale=1.5, gate_with_input=False,
                                      gate_tower_input=True, dropout=0.1,
                                      kernel_regularizer="l2"), [x, [p1, p2]])
    ix, i1, i2 = tf.keras.Input([6]), tf.keras.Input([2]), tf.keras.Input([3])
    logits = TaskTowers(2, [3])(PPNetTower(2, [8, 4], 3)([ix, [i1, i2]]))
    check_savedmodel(tf.keras.Model([ix, i1, i2], logits), [x, p1, p2])


def test_gradients_reach_every_variable(check_gradients):
    rng = np.random.default_rng(8)
    x = rng.standard_normal([32, 6]).astype(np.float32)
    personal = rng.standard_normal([32, 3]).astype(np.float32)
    check_gradients(PPNetTower(2, [8, 4], 5), [x, personal])
    check_gradients(PPNetTower(3, [4], 5, gate_tower_input=True), [x, personal])


def test_mixed_precision_close_to_float32(mixed_bf16):
    rng = np.random.default_rng(9)
    x = rng.standard_normal([16, 6]).astype(np.float32)
    personal = rng.standard_normal([16, 3]).astype(np.float32)
    ref, layer = PPNetTower(2, [8, 4], 5, dtype="float32"), PPNetTower(2, [8, 4], 5)
    ref([x, personal]), layer([x, personal])
    layer.set_weights(ref.get_weights())
    assert all(v.dtype == tf.float32 for v in layer.variables)
    got, want = layer([x, personal]), ref([x, personal])
    assert got[0].dtype == tf.bfloat16 and want[0].dtype == tf.float32
    for g, w in zip(got, want):
        np.testing.assert_allclose(tf.cast(g, tf.float32).numpy(), w.numpy(),
                                   rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_tasks=0), "num_tasks must be an integer >= 1, got 0"),
    (dict(units=[4, 0]), "units must be a sequence of positive integers, got [4, 0]"),
    (dict(units=[]), "units must not be empty, got []"),
    (dict(gate_hidden_units=-2), "gate_hidden_units must be an integer >= 1, got -2"),
    (dict(scale=0), "scale must be a finite number > 0, got 0"),
    (dict(dropout=1.0), "dropout must be a float in [0, 1), got 1.0"),
    (dict(activation="nope"), "activation is not a known activation, got 'nope'"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as err:
        PPNetTower(**{**dict(num_tasks=2, units=[4], gate_hidden_units=3), **kwargs})
    assert message in str(err.value)


def test_bad_inputs():
    x, p = np.zeros([2, 6], np.float32), np.zeros([2, 3], np.float32)
    with pytest.raises(ValueError, match="PPNetTower expects inputs"):
        PPNetTower(2, [4], 3)(x)
    with pytest.raises(ValueError, match="personal_features must be \\[batch, d\\]"):
        PPNetTower(2, [4], 3)([x, np.zeros([2], np.float32)])
    with pytest.raises(ValueError, match="personal_features must not be empty"):
        PPNetTower(2, [4], 3)([x, np.zeros([2, 0], np.float32)])
    with pytest.raises(ValueError, match="PEPNet expects inputs"):
        PEPNet(2, [4], 3, 3)([x, p])


# ---------------------------------------------------------------------------------- PEPNet
def test_pepnet_is_epnet_then_ppnet():
    rng = np.random.default_rng(10)
    e = rng.standard_normal([9, 6]).astype(np.float32)
    domain = rng.standard_normal([9, 2]).astype(np.float32)
    personal = [rng.standard_normal([9, 3]).astype(np.float32),
                rng.standard_normal([9, 1]).astype(np.float32)]
    layer = PEPNet(2, [5, 4], epnet_gate_hidden_units=3, ppnet_gate_hidden_units=4,
                   field_dims=[4, 2])
    got = layer([e, domain, personal])
    assert isinstance(layer.epnet, EPNet) and isinstance(layer.ppnet, PPNetTower)
    assert layer.epnet.field_dims == [4, 2]
    _random_weights(layer, 11)
    got = layer([e, domain, personal])
    ep = layer.epnet([e, domain]).numpy()
    want = _reference(layer.ppnet, ep, np.concatenate(personal, -1))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5)
    # the PPNet gates read the EPNet output (stop-gradient): stacking without it differs
    plain = layer.ppnet([e, personal])
    assert not np.allclose(plain[0].numpy(), got[0].numpy(), atol=1e-4)


def test_pepnet_config_savedmodel_gradients(check_config_roundtrip, check_savedmodel,
                                            check_gradients):
    rng = np.random.default_rng(12)
    e = rng.standard_normal([6, 6]).astype(np.float32)
    domain = rng.standard_normal([6, 2]).astype(np.float32)
    personal = rng.standard_normal([6, 3]).astype(np.float32)
    layer = PEPNet(2, [8, 4], 3, 5, field_dims=[3, 3], scale=1.5, gate_tower_input=True,
                   dropout=0.1, kernel_regularizer="l2")
    clone = check_config_roundtrip(layer, [e, domain, personal])
    assert clone.ppnet.get_config()["gate_tower_input"] is True
    ie, idom, ip = tf.keras.Input([6]), tf.keras.Input([2]), tf.keras.Input([3])
    logits = TaskTowers(2, [3])(PEPNet(2, [8, 4], 3, 5)([ie, idom, ip]))
    check_savedmodel(tf.keras.Model([ie, idom, ip], logits), [e, domain, personal])
    check_gradients(PEPNet(2, [8, 4], 3, 5), [e, domain, personal])
