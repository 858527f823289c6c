"""Multi-gate Mixture-of-Experts tower with fused experts and gates."""
from __future__ import annotations

import tensorflow as tf

from ranking.layers.mlp import (ParallelMLP, _check_int, _check_rate, _check_units,
                                _get_initializer, _get_regularizer, _PACKAGE,
                                _serialize_activation, _stacked_initializer)

_GATE_ACTIVATIONS = ("softmax", "sigmoid")


def _check_gate_activation(value) -> str:
    if value not in _GATE_ACTIVATIONS:
        raise ValueError(f"gate_activation must be one of {_GATE_ACTIVATIONS}, got {value!r}")
    return value


def gate_weights(logits: tf.Tensor, activation: str) -> tf.Tensor:
    """Gate logits ``[..., E]`` -> mixture weights, computed in float32, returned in the
    logits' dtype (a bfloat16 softmax over a few experts loses the small weights)."""
    x = tf.cast(logits, tf.float32)
    w = tf.nn.softmax(x, axis=-1) if activation == "softmax" else tf.sigmoid(x)
    return tf.cast(w, logits.dtype)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class MMoE(tf.keras.layers.Layer):
    """Multi-gate Mixture-of-Experts (Ma et al., "Modeling Task Relationships in Multi-task
    Learning with Multi-gate Mixture-of-Experts", KDD 2018).

    ``E`` expert MLPs read the shared input ``x``; each task ``t`` has its own gate
    ``g_t(x) = softmax(x W_t [+ b_t])`` over the experts, and its representation is the gated
    mixture ``f_t(x) = sum_e g_t(x)_e * expert_e(x)``. Tasks share experts but weigh them
    differently, which softens the negative transfer of a hard shared bottom.

    Fused: the experts are one :class:`~ranking.layers.mlp.ParallelMLP` (first layer a single
    ``[d, E*h]`` matmul), and all T gates are one ``[d, T*E]`` matmul (kernel stored as
    ``[T, d, E]``).

    Args:
      num_tasks: number of tasks T, >= 1.
      num_experts: number of experts E, >= 1.
      expert_units: positive int or sequence of positive ints, widths of each expert MLP.
      gate_activation: ``"softmax"`` (paper) or ``"sigmoid"`` (independent gates).
      gate_use_bias: whether the gates have a bias (default False, as in the paper).
      expert_activation, expert_dropout, kernel_initializer, kernel_regularizer: for the experts
        (the kernel settings apply to the gates too).
      identical_experts: whether all experts start from the same draw of ``kernel_initializer``
        (DeepCTR's init) instead of one draw each (default); see
        :class:`~ranking.layers.towers.PLE`.

    Input shape: ``[batch, d]``. Output: list of T tensors ``[batch, expert_units[-1]]`` in the
    layer's compute dtype.
    """

    def __init__(self, num_tasks: int, num_experts: int, expert_units,
                 gate_activation: str = "softmax", gate_use_bias: bool = False,
                 expert_activation="relu", expert_dropout: float = 0.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 identical_experts: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.identical_experts = bool(identical_experts)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.num_experts = _check_int("num_experts", num_experts)
        self.expert_units = _check_units("expert_units", expert_units)
        self.gate_activation = _check_gate_activation(gate_activation)
        self.gate_use_bias = bool(gate_use_bias)
        self.expert_dropout = _check_rate("expert_dropout", expert_dropout)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.experts = ParallelMLP(
            self.num_experts, self.expert_units, activation=expert_activation,
            dropout=self.expert_dropout, kernel_initializer=self._kernel_initializer,
            kernel_regularizer=self._kernel_regularizer, identical_init=self.identical_experts,
            dtype=self.dtype_policy, name="experts")

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 2 or input_shape[-1] is None:
            raise ValueError(f"MMoE expects inputs [batch, d] with d known, got {input_shape}")
        d = input_shape[-1]
        self.experts.build(input_shape)
        self.gate_kernel = self.add_weight(
            "gate_kernel", shape=[self.num_tasks, d, self.num_experts],
            initializer=_stacked_initializer(self._kernel_initializer, self.num_tasks),
            regularizer=self._kernel_regularizer)
        self.gate_bias = self.add_weight(
            "gate_bias", shape=[self.num_tasks, self.num_experts],
            initializer="zeros") if self.gate_use_bias else None
        super().build(input_shape)

    def call(self, inputs, training=None):
        t, e = self.num_tasks, self.num_experts
        experts = self.experts(inputs, training=training)  # [E, b, h]
        d = self.gate_kernel.shape[1]
        kernel = tf.reshape(tf.transpose(self.gate_kernel, [1, 0, 2]), [d, t * e])
        logits = tf.matmul(inputs, kernel)  # [b, T*E]
        if self.gate_bias is not None:
            logits = tf.nn.bias_add(logits, tf.reshape(self.gate_bias, [t * e]))
        gates = gate_weights(tf.reshape(logits, [-1, t, e]), self.gate_activation)
        gates = tf.expand_dims(tf.transpose(gates, [1, 2, 0]), -1)  # [T, E, b, 1]
        mixed = tf.reduce_sum(gates * tf.expand_dims(experts, 0), axis=1)  # [T, b, h]
        return tf.unstack(mixed, num=t)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape([tf.TensorShape(input_shape)[0], self.expert_units[-1]])
        return [shape] * self.num_tasks

    def get_config(self):
        return {
            **super().get_config(), "num_tasks": self.num_tasks,
            "num_experts": self.num_experts, "expert_units": list(self.expert_units),
            "gate_activation": self.gate_activation, "gate_use_bias": self.gate_use_bias,
            "expert_activation": _serialize_activation(self.experts._activation),
            "expert_dropout": self.expert_dropout,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self._kernel_regularizer)
            if self._kernel_regularizer is not None else None,
            "identical_experts": self.identical_experts,
        }
