"""Progressive Layered Extraction tower (multi-level CGC) with fused experts and gates."""
from __future__ import annotations

import tensorflow as tf

from ranking.layers.mlp import (ParallelMLP, _check_int, _check_rate, _check_units,
                                _get_initializer, _get_regularizer, _PACKAGE,
                                _clone_initializer, _serialize_activation,
                                _stacked_initializer)
from ranking.layers.towers.mmoe import _check_gate_activation, gate_weights


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PLE(tf.keras.layers.Layer):
    """Progressive Layered Extraction (Tang et al., "Progressive Layered Extraction (PLE): A
    Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

    MMoE lets every task mix the same experts, so tasks of different difficulty or with
    conflicting gradients still hurt each other ("seesaw"). PLE gives each task its own experts
    besides the shared ones and stacks ``num_levels`` Customized Gate Control (CGC) levels.
    At level ``l`` (inputs ``q_1..q_T`` per task and ``s`` shared; at level 1 all equal ``x``):

    * task ``k`` has ``task_experts`` experts reading ``q_k``; there are ``shared_experts``
      shared experts reading ``s``;
    * task gate ``k`` (softmax over task-k experts + shared experts, logits ``q_k W_k``) mixes
      them into task ``k``'s next input;
    * on every level but the last, a shared gate (softmax over *all* experts, logits ``s W_s``)
      mixes every expert into the next shared input; the last level outputs only the T task
      representations.

    Fused: per level, all ``E = T * task_experts + shared_experts`` experts are one
    :class:`~ranking.layers.mlp.ParallelMLP` (expert order: task 0's, ..., task T-1's, shared);
    on level 1 the first expert layer is one ``[d, E*h]`` matmul and all gates one matmul, on
    later levels the experts are batched matmuls and the task gates one batched matmul.

    Args:
      num_tasks: number of tasks T, >= 1.
      num_levels: number of CGC levels, >= 1 (1 = CGC).
      shared_experts: shared experts per level, >= 1.
      task_experts: experts per task per level, >= 1.
      expert_units: positive int or sequence of positive ints, widths of each expert MLP
        (same on every level).
      gate_activation: ``"softmax"`` (paper) or ``"sigmoid"``.
      gate_use_bias: whether gates have a bias (default False).
      expert_activation, expert_dropout, kernel_initializer, kernel_regularizer: for the experts
        (kernel settings apply to the gates too).
      identical_experts: False (default): every expert of a level starts from its own draw of
        ``kernel_initializer``. True: all experts of a level (task and shared) start from the
        same draw, as in DeepCTR's PLE/MMoE (every expert seeded alike); they then differ only
        through the gradients their gates route to them. Mixing E distinct random experts
        averages their fluctuations away (a softmax mix of 4-6 independent glorot experts has
        ~1/2 the output spread of one expert, compounding per level), so the identical start
        passes a ~3x larger signal to the next level and the towers at initialization; on the
        DeepCTR comparison benchmark (``benchmarks/deepctr_comparison.py``) it is worth
        ~+0.001 test AUC. Gates are initialized independently either way.

    Input shape: ``[batch, d]``. Output: list of T tensors ``[batch, expert_units[-1]]`` in the
    layer's compute dtype.
    """

    def __init__(self, num_tasks: int, num_levels: int, shared_experts: int, task_experts: int,
                 expert_units, gate_activation: str = "softmax", gate_use_bias: bool = False,
                 expert_activation="relu", expert_dropout: float = 0.0,
                 kernel_initializer="glorot_uniform", kernel_regularizer=None,
                 identical_experts: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.identical_experts = bool(identical_experts)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.num_levels = _check_int("num_levels", num_levels)
        self.shared_experts = _check_int("shared_experts", shared_experts)
        self.task_experts = _check_int("task_experts", task_experts)
        self.expert_units = _check_units("expert_units", expert_units)
        self.gate_activation = _check_gate_activation(gate_activation)
        self.gate_use_bias = bool(gate_use_bias)
        self.expert_dropout = _check_rate("expert_dropout", expert_dropout)
        self._kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self._kernel_regularizer = _get_regularizer("kernel_regularizer", kernel_regularizer)
        self.num_level_experts = self.num_tasks * self.task_experts + self.shared_experts
        self.experts = [
            ParallelMLP(self.num_level_experts, self.expert_units, activation=expert_activation,
                        dropout=self.expert_dropout, kernel_initializer=self._kernel_initializer,
                        kernel_regularizer=self._kernel_regularizer,
                        identical_init=self.identical_experts,
                        dtype=self.dtype_policy, name=f"experts_{level}")
            for level in range(self.num_levels)]

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 2 or input_shape[-1] is None:
            raise ValueError(f"PLE expects inputs [batch, d] with d known, got {input_shape}")
        t, n_task, n_all = self.num_tasks, self.task_experts, self.num_level_experts
        n_gate = n_task + self.shared_experts  # experts seen by a task gate
        self.task_gate_kernels, self.task_gate_biases = [], []
        self.shared_gate_kernels, self.shared_gate_biases = [], []
        d = input_shape[-1]
        for level in range(self.num_levels):
            self.experts[level].build(input_shape if level == 0 else
                                      tf.TensorShape([n_all, input_shape[0], d]))
            self.task_gate_kernels.append(self.add_weight(
                f"task_gate_kernel_{level}", shape=[t, d, n_gate],
                initializer=_stacked_initializer(self._kernel_initializer, t),
                regularizer=self._kernel_regularizer))
            if self.gate_use_bias:
                self.task_gate_biases.append(self.add_weight(
                    f"task_gate_bias_{level}", shape=[t, n_gate], initializer="zeros"))
            if level < self.num_levels - 1:
                self.shared_gate_kernels.append(self.add_weight(
                    f"shared_gate_kernel_{level}", shape=[d, n_all],
                    initializer=_clone_initializer(self._kernel_initializer, 1000 + level),
                    regularizer=self._kernel_regularizer))
                if self.gate_use_bias:
                    self.shared_gate_biases.append(self.add_weight(
                        f"shared_gate_bias_{level}", shape=[n_all], initializer="zeros"))
            d = self.expert_units[-1]
        super().build(input_shape)

    def _gate_logits(self, level, task_in, shared_in):
        """Task gate logits ``[T, b, n_gate]`` and shared gate logits ``[b, E]`` (or None)."""
        t = self.num_tasks
        kernel = self.task_gate_kernels[level]  # [T, d, n_gate]
        has_shared = level < self.num_levels - 1
        if task_in is None:
            # Level 1: every gate reads x -> one [b, d] x [d, T*n_gate (+ E)] matmul.
            _, d, n_gate = kernel.shape
            wide = [tf.reshape(tf.transpose(kernel, [1, 0, 2]), [d, t * n_gate])]
            if has_shared:
                wide.append(self.shared_gate_kernels[level])
            logits = tf.matmul(shared_in, tf.concat(wide, 1) if len(wide) > 1 else wide[0])
            if self.gate_use_bias:
                biases = [tf.reshape(self.task_gate_biases[level], [t * n_gate])]
                if has_shared:
                    biases.append(self.shared_gate_biases[level])
                logits = tf.nn.bias_add(logits, tf.concat(biases, 0))
            shared_logits = None
            if has_shared:
                logits, shared_logits = tf.split(logits, [t * n_gate, self.num_level_experts], 1)
            task_logits = tf.transpose(tf.reshape(logits, [-1, t, n_gate]), [1, 0, 2])
            return task_logits, shared_logits
        task_logits = tf.matmul(task_in, kernel)  # [T, b, d] x [T, d, n_gate]
        if self.gate_use_bias:
            task_logits = task_logits + tf.expand_dims(self.task_gate_biases[level], 1)
        shared_logits = None
        if has_shared:
            shared_logits = tf.matmul(shared_in, self.shared_gate_kernels[level])
            if self.gate_use_bias:
                shared_logits = tf.nn.bias_add(shared_logits, self.shared_gate_biases[level])
        return task_logits, shared_logits

    def _level(self, level, task_in, shared_in, training):
        """One CGC level. ``task_in`` is ``[T, b, d]`` or None on level 1 (all inputs = x)."""
        t, n_task, n_shared = self.num_tasks, self.task_experts, self.shared_experts
        if task_in is None:
            experts = self.experts[level](shared_in, training=training)  # [E, b, h]
        else:
            expert_in = tf.concat([
                tf.repeat(task_in, n_task, axis=0),  # task k's experts read q_k
                tf.broadcast_to(tf.expand_dims(shared_in, 0),
                                [n_shared, tf.shape(shared_in)[0], shared_in.shape[-1]]),
            ], axis=0)
            experts = self.experts[level](expert_in, training=training)
        task_logits, shared_logits = self._gate_logits(level, task_in, shared_in)
        task_gates = gate_weights(task_logits, self.gate_activation)  # [T, b, n_task+n_shared]
        task_gates = tf.expand_dims(tf.transpose(task_gates, [0, 2, 1]), -1)  # [T, n_g, b, 1]
        # tf.split / expand_dims, not slicing: a slice's gradient is a zero-padded full tensor.
        own, shared = tf.split(experts, [t * n_task, n_shared], axis=0)
        own = tf.reshape(own, [t, n_task, -1, experts.shape[-1]])  # [T, n_task, b, h]
        own_gates, shared_gates_t = tf.split(task_gates, [n_task, n_shared], axis=1)
        task_out = (tf.reduce_sum(own_gates * own, axis=1)
                    + tf.reduce_sum(shared_gates_t * tf.expand_dims(shared, 0), axis=1))
        shared_out = None
        if shared_logits is not None:
            shared_gates = gate_weights(shared_logits, self.gate_activation)  # [b, E]
            shared_gates = tf.expand_dims(tf.transpose(shared_gates), -1)  # [E, b, 1]
            shared_out = tf.reduce_sum(shared_gates * experts, axis=0)
        return task_out, shared_out

    def call(self, inputs, training=None):
        task_in, shared_in = None, inputs
        for level in range(self.num_levels):
            task_in, shared_in = self._level(level, task_in, shared_in, training)
        return tf.unstack(task_in, num=self.num_tasks)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape([tf.TensorShape(input_shape)[0], self.expert_units[-1]])
        return [shape] * self.num_tasks

    def get_config(self):
        return {
            **super().get_config(), "num_tasks": self.num_tasks, "num_levels": self.num_levels,
            "shared_experts": self.shared_experts, "task_experts": self.task_experts,
            "expert_units": list(self.expert_units), "gate_activation": self.gate_activation,
            "gate_use_bias": self.gate_use_bias,
            "expert_activation": _serialize_activation(self.experts[0]._activation),
            "expert_dropout": self.expert_dropout,
            "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self._kernel_regularizer)
            if self._kernel_regularizer is not None else None,
            "identical_experts": self.identical_experts,
        }
