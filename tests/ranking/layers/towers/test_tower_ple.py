"""PLE: multi-level CGC with fused experts and gates."""
import math

import numpy as np
import pytest
import tensorflow as tf

from ranking.layers import PLE, TaskTowers


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _reference(layer, x):
    """PLE as in the paper, one expert and one gate at a time.

    Expert slots of a level: task 0's experts, ..., task T-1's, then the shared experts.
    """
    t, nt, ns = layer.num_tasks, layer.task_experts, layer.shared_experts
    gate = _softmax if layer.gate_activation == "softmax" else (lambda z: 1 / (1 + np.exp(-z)))

    def expert(level, slot, inputs):
        h = inputs
        bank = layer.experts[level]
        for k, b in zip(bank.kernels, bank.biases):
            h = np.maximum(h @ k.numpy()[slot] + b.numpy()[slot], 0.0)
        return h

    task_in, shared_in = [x] * t, x
    for level in range(layer.num_levels):
        own = [[expert(level, k * nt + j, task_in[k]) for j in range(nt)] for k in range(t)]
        shared = [expert(level, t * nt + j, shared_in) for j in range(ns)]
        new_task = []
        for k in range(t):
            logits = task_in[k] @ layer.task_gate_kernels[level].numpy()[k]
            if layer.gate_use_bias:
                logits = logits + layer.task_gate_biases[level].numpy()[k]
            g = gate(logits)
            mixed = own[k] + shared
            new_task.append(sum(g[:, i:i + 1] * mixed[i] for i in range(nt + ns)))
        if level < layer.num_levels - 1:
            logits = shared_in @ layer.shared_gate_kernels[level].numpy()
            if layer.gate_use_bias:
                logits = logits + layer.shared_gate_biases[level].numpy()
            g = gate(logits)
            everything = [e for k in range(t) for e in own[k]] + shared
            shared_in = sum(g[:, i:i + 1] * everything[i] for i in range(len(everything)))
        task_in = new_task
    return task_in


def _randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32)
                       for w in layer.get_weights()])


def test_golden_two_levels():
    layer = PLE(num_tasks=2, num_levels=2, shared_experts=1, task_experts=1, expert_units=[1])
    x = np.array([[1.0, 2.0]], np.float32)
    layer(x)
    ln3, ln2 = math.log(3.0), math.log(2.0)
    # Level 1, slots [task-0 expert, task-1 expert, shared expert], all read x = [1, 2]:
    #   relu(x1) = 1, relu(x2) = 2, relu(x1 + x2) = 3
    layer.experts[0].kernels[0].assign([[[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [1.0]]])
    layer.experts[0].biases[0].assign([[0.0], [0.0], [0.0]])
    # task gate 0 over [own, shared]: logits [ln3 * x1, 0] -> [3/4, 1/4] -> q0 = 0.75 + 0.75 = 1.5
    # task gate 1: logits [0, 0] -> [1/2, 1/2]                         -> q1 = 1 + 1.5 = 2.5
    layer.task_gate_kernels[0].assign([[[ln3, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # shared gate over all 3: logits [0, 0, ln2 * x1] -> [1/4, 1/4, 1/2]
    #   s = 0.25*1 + 0.25*2 + 0.5*3 = 2.25
    layer.shared_gate_kernels[0].assign([[0.0, 0.0, ln2], [0.0, 0.0, 0.0]])
    # Level 2: task-0 expert reads q0: relu(2 * 1.5) = 3; task-1 expert reads q1:
    #   relu(2.5 - 0.5) = 2; shared expert reads s: relu(2.25 + 1) = 3.25
    layer.experts[1].kernels[0].assign([[[2.0]], [[1.0]], [[1.0]]])
    layer.experts[1].biases[0].assign([[0.0], [-0.5], [1.0]])
    # task gate 0 reads q0: logits [0, 0] -> out0 = 0.5*3 + 0.5*3.25 = 3.125
    # task gate 1 reads q1: logits [ln3 / 2.5 * 2.5, 0] -> [3/4, 1/4]
    #   -> out1 = 0.75*2 + 0.25*3.25 = 2.3125
    layer.task_gate_kernels[1].assign([[[0.0, 0.0]], [[ln3 / 2.5, 0.0]]])
    out0, out1 = layer(x)
    np.testing.assert_allclose(out0.numpy(), [[3.125]], rtol=1e-6)
    np.testing.assert_allclose(out1.numpy(), [[2.3125]], rtol=1e-6)


def test_last_level_has_no_shared_gate():
    layer = PLE(2, 3, 1, 1, [2], gate_use_bias=True)
    layer(np.zeros([1, 3], np.float32))
    assert len(layer.task_gate_kernels) == 3 and len(layer.task_gate_biases) == 3
    assert len(layer.shared_gate_kernels) == 2 and len(layer.shared_gate_biases) == 2
    assert layer.experts[0].kernels[0].shape == (3, 3, 2)  # E = 2 tasks * 1 + 1 shared
    assert layer.task_gate_kernels[1].shape == (2, 2, 2)  # [T, d, task + shared experts]
    assert layer.shared_gate_kernels[0].shape == (3, 3)  # [d, all experts]


@pytest.mark.parametrize("levels, tasks, shared, task_experts, gate_activation, bias", [
    (1, 2, 1, 2, "softmax", False),  # CGC
    (2, 2, 2, 2, "softmax", False),  # equal expert counts
    (3, 3, 2, 1, "sigmoid", True),   # unequal counts, 3 levels
])
def test_fused_matches_per_expert_reference(levels, tasks, shared, task_experts,
                                            gate_activation, bias):
    x = np.random.default_rng(1).standard_normal([9, 7]).astype(np.float32)
    layer = PLE(tasks, levels, shared, task_experts, [6, 5], gate_activation=gate_activation,
                gate_use_bias=bias)
    layer(x)
    _randomize(layer)
    got = layer(x)
    assert len(got) == tasks
    for g, w in zip(got, _reference(layer, x)):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-5, atol=1e-5)


def test_identical_experts_start_as_one_expert():
    """identical_experts: every expert of a level starts from one draw, so every gate mixes
    equal outputs and each level's output is that one expert's, whatever the gates."""
    layer = PLE(2, 2, 2, 2, [8, 4], identical_experts=True)
    x = np.random.default_rng(5).standard_normal([6, 5]).astype(np.float32)
    got = layer(x)
    h = x
    for bank in layer.experts:
        for k in bank.kernels:
            k = k.numpy()
            for i in range(1, layer.num_level_experts):
                np.testing.assert_array_equal(k[i], k[0])
        for k, b in zip(bank.kernels, bank.biases):
            h = np.maximum(h @ k.numpy()[0] + b.numpy()[0], 0.0)
    for g in got:
        np.testing.assert_allclose(g.numpy(), h, rtol=1e-5, atol=1e-6)
    # the gates still get their own draws (per task), and the default keeps distinct experts
    gates = layer.task_gate_kernels[0].numpy()
    assert not np.allclose(gates[0], gates[1])
    default = PLE(2, 1, 2, 2, [8])
    default(x)
    assert not default.identical_experts
    assert not np.allclose(default.experts[0].kernels[0][0], default.experts[0].kernels[0][1])


def test_config_and_savedmodel_roundtrip(check_config_roundtrip, check_savedmodel):
    x = np.random.default_rng(2).standard_normal([5, 6]).astype(np.float32)
    check_config_roundtrip(PLE(2, 2, 2, 1, [8, 4], gate_activation="sigmoid",
                               gate_use_bias=True, expert_dropout=0.1), x)
    assert check_config_roundtrip(PLE(2, 1, 1, 1, [4], identical_experts=True),
                                  x).experts[0].identical_init
    inp = tf.keras.Input([6])
    model = tf.keras.Model(inp, TaskTowers(2, [3])(PLE(2, 2, 1, 2, [8, 4])(inp)))
    check_savedmodel(model, x)


def test_gradients_reach_every_variable(check_gradients):
    x = np.random.default_rng(3).standard_normal([32, 6]).astype(np.float32)
    check_gradients(PLE(2, 3, 2, 1, [8, 4], gate_use_bias=True), x)


def test_mixed_precision_close_to_float32(mixed_bf16):
    x = np.random.default_rng(4).standard_normal([16, 6]).astype(np.float32)
    ref = PLE(2, 2, 2, 1, [8, 4], dtype="float32")
    layer = PLE(2, 2, 2, 1, [8, 4])
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
    (dict(num_levels=0), "num_levels must be an integer >= 1, got 0"),
    (dict(shared_experts=0), "shared_experts must be an integer >= 1, got 0"),
    (dict(task_experts=-1), "task_experts must be an integer >= 1, got -1"),
    (dict(expert_units=[8, 0]), "expert_units must be a sequence of positive integers, "
                                "got [8, 0]"),
    (dict(gate_activation="tanh"),
     "gate_activation must be one of ('softmax', 'sigmoid'), got 'tanh'"),
])
def test_bad_arguments(kwargs, message):
    args = dict(num_tasks=2, num_levels=2, shared_experts=1, task_experts=1, expert_units=[4])
    with pytest.raises(ValueError) as err:
        PLE(**{**args, **kwargs})
    assert message in str(err.value)
