"""Shared-bottom multi-task tower: one MLP whose output every task reads."""
from __future__ import annotations

import tensorflow as tf

from ranking.layers.mlp import MLP, _check_int, _PACKAGE


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SharedBottom(tf.keras.layers.Layer):
    """Hard parameter sharing (Caruana, "Multitask Learning", Machine Learning 1997).

    One MLP computes a representation shared by all tasks; the task-specific part lives in the
    task towers (:class:`~ranking.layers.mlp.TaskTowers`). It is the baseline MMoE and PLE are
    compared against: cheap, but tasks whose gradients conflict pull the shared weights apart.

    Args:
      num_tasks: number of tasks T, >= 1.
      units: positive int or sequence of positive ints, widths of the shared MLP.
      activation, dropout, use_bias, kernel_initializer, kernel_regularizer: passed to
        :class:`~ranking.layers.mlp.MLP`.

    Input shape: ``[batch, d]``. Output: list of T tensors ``[batch, units[-1]]`` -- the same
    tensor T times (tower contract: one representation per task).
    """

    def __init__(self, num_tasks: int, units, activation="relu", dropout: float = 0.0,
                 use_bias: bool = True, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = _check_int("num_tasks", num_tasks)
        self.bottom = MLP(units, activation=activation, dropout=dropout, use_bias=use_bias,
                          kernel_initializer=kernel_initializer,
                          kernel_regularizer=kernel_regularizer, dtype=self.dtype_policy,
                          name="bottom")

    def call(self, inputs, training=None):
        shared = self.bottom(inputs, training=training)
        return [shared] * self.num_tasks

    def compute_output_shape(self, input_shape):
        return [self.bottom.compute_output_shape(input_shape)] * self.num_tasks

    def get_config(self):
        bottom = self.bottom.get_config()
        return {**super().get_config(), "num_tasks": self.num_tasks,
                **{k: bottom[k] for k in ("units", "activation", "dropout", "use_bias",
                                          "kernel_initializer", "kernel_regularizer")}}
