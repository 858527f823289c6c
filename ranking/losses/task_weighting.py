r"""Combining task losses: masked per-task means, fixed weights, learned uncertainty weights.

* :func:`masked_mean` -- a task's loss over the rows it is defined on, e.g. a CVR loss over
  clicked impressions only: ``sum(m * l) / sum(m)``, and 0 (not NaN) when no row counts.
* :class:`FixedTaskWeighting` -- ``sum_t w_t L_t`` with constant weights.
* :class:`UncertaintyWeighting` -- Kendall, Gal & Cipolla, "Multi-Task Learning Using
  Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018: per-task weights
  learnt from trainable log-variances (derivation in the class docstring).

Both weighting layers take the T task losses (a list of scalars, or a ``[T]`` tensor) and
return the total, a float32 scalar. They compute in float32 whatever the global policy.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import tensorflow as tf

from ranking.losses.focal import _PACKAGE


def masked_mean(losses, mask=None, axis=None) -> tf.Tensor:
    r"""``sum(mask * losses) / sum(mask)`` over ``axis``; 0 where the mask sums to 0.

    The per-task sample-weight helper: e.g. ``masked_mean(cvr_bce, clicked)`` is the CVR loss
    averaged over clicked rows only. Unlike Keras' ``sample_weight`` reduction
    (``SUM_OVER_BATCH_SIZE`` divides by the batch size, so a task's loss shrinks with its
    share of labelled rows), this is the mean over the rows that count. Rows with mask 0 are
    dropped with ``tf.where``, so even a non-finite loss there does not leak into the value;
    a batch with no masked-in row gives 0 with zero gradient (``divide_no_nan``), never NaN.

    Args:
      losses: per-example losses (any shape), any float dtype.
      mask: ``None`` (plain mean) or non-negative weights / a 0-1 (or bool) mask
        broadcastable to ``losses``.
      axis: axes to reduce (``None``: all).

    Returns:
      float32 tensor, ``losses`` reduced over ``axis``.
    """
    losses = tf.cast(losses, tf.float32)
    if mask is None:
        return tf.reduce_mean(losses, axis=axis)
    mask = tf.broadcast_to(tf.cast(mask, tf.float32), tf.shape(losses))
    weighted = tf.where(mask != 0.0, losses * mask, tf.zeros_like(losses))
    return tf.math.divide_no_nan(tf.reduce_sum(weighted, axis=axis),
                                 tf.reduce_sum(mask, axis=axis))


def _stack_losses(name: str, losses, num_tasks: int) -> tf.Tensor:
    if isinstance(losses, (list, tuple)):
        losses = tf.stack([tf.reshape(tf.cast(l, tf.float32), []) for l in losses])
    else:
        losses = tf.reshape(tf.cast(losses, tf.float32), [-1])
    if losses.shape[0] is not None and losses.shape[0] != num_tasks:
        raise ValueError(f"{name} with num_tasks={num_tasks} got {losses.shape[0]} losses")
    return losses


def _check_weights(value: Any) -> list[float]:
    if (isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value
            or any(isinstance(w, bool) or not isinstance(w, numbers.Real)
                   or not math.isfinite(w) or w < 0 for w in value)):
        raise ValueError(f"weights must be a non-empty sequence of finite numbers >= 0, "
                         f"got {value!r}")
    return [float(w) for w in value]


def _check_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(
            value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class FixedTaskWeighting(tf.keras.layers.Layer):
    r"""``sum_t w_t L_t`` with fixed, non-negative weights (no variables).

    Args:
      weights: sequence of T finite numbers >= 0.

    Input: T scalar losses (list) or a ``[T]`` tensor. Output: float32 scalar.
    """

    def __init__(self, weights, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.task_weights = _check_weights(weights)

    @property
    def num_tasks(self) -> int:
        return len(self.task_weights)

    def call(self, losses):
        losses = _stack_losses("FixedTaskWeighting", losses, self.num_tasks)
        return tf.reduce_sum(tf.constant(self.task_weights, tf.float32) * losses)

    def get_config(self):
        return {**super().get_config(), "weights": list(self.task_weights)}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class UncertaintyWeighting(tf.keras.layers.Layer):
    r"""Learned task weights from homoscedastic uncertainty (Kendall, Gal & Cipolla, CVPR 2018).

    Derivation. Model task ``t``'s output as noisy with a task-level scale ``sigma_t``. For a
    Gaussian likelihood ``N(y; f(x), sigma^2)`` the negative log-likelihood is
    ``L/(2 sigma^2) + log sigma`` (``L`` the squared error); for a classifier with logits
    scaled by ``1/sigma^2`` (a Boltzmann distribution of temperature ``sigma^2``) the paper's
    approximation gives ``L/sigma^2 + log sigma`` (``L`` the cross-entropy). Maximizing the
    joint likelihood of all tasks trains the ``sigma_t`` with the network: a noisy / hard task
    gets a large ``sigma_t`` and a small weight, and ``log sigma_t`` stops ``sigma_t`` from
    growing without bound. Parametrized by ``s_t = log sigma_t^2`` (unconstrained, and
    ``exp(-s_t)`` never divides by zero), the objective this layer computes is

        total = sum_t exp(-s_t) L_t + c * s_t.

    ``c = 1`` (default) is the widely used form (Kendall's own code): per task,
    ``d total / d s_t = 1 - exp(-s_t) L_t``, zero at ``exp(s_t) = L_t``, so the learnt weight
    ``exp(-s_t)`` tends to ``1 / L_t`` (each task's term tends to 1: tasks are balanced by their
    loss scale). ``c = 0.5`` is the paper's classification form ``L_t / sigma_t^2 +
    log sigma_t`` (weight tends to ``1 / (2 L_t)``). The term ``c s_t`` is negative when
    ``sigma_t < 1``, so the total may be negative; only its gradient matters. A task whose loss
    goes to 0 drives ``s_t`` to ``-inf`` (its weight to infinity): give the log-variances a
    smaller learning rate or clip them if a task can be fitted perfectly.

    The log-variances are float32 trainable weights ``log_variances [T]`` of this layer; the
    layer must be tracked by the model (an attribute of it) for the optimizer to update them.

    Args:
      num_tasks: T, >= 1.
      initial_log_variance: initial ``s_t`` (0: weights start at 1), finite.
      log_variance_weight: ``c`` above, a finite number > 0 (1, or 0.5 for the paper's
        classification form).

    Input: T scalar losses (list) or a ``[T]`` tensor. Output: float32 scalar.
    """

    def __init__(self, num_tasks: int, initial_log_variance: float = 0.0,
                 log_variance_weight: float = 1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if (isinstance(num_tasks, bool) or not isinstance(num_tasks, numbers.Integral)
                or num_tasks < 1):
            raise ValueError(f"num_tasks must be an integer >= 1, got {num_tasks!r}")
        self.num_tasks = int(num_tasks)
        self.initial_log_variance = _check_finite("initial_log_variance", initial_log_variance)
        self.log_variance_weight = _check_finite("log_variance_weight", log_variance_weight)
        if self.log_variance_weight <= 0:
            raise ValueError(f"log_variance_weight must be > 0, got {log_variance_weight!r}")
        self.log_variances = self.add_weight(
            "log_variances", shape=[self.num_tasks], dtype=tf.float32,
            initializer=tf.keras.initializers.Constant(self.initial_log_variance),
            trainable=True, experimental_autocast=False)

    def task_weights(self) -> tf.Tensor:
        """The current weights ``exp(-s_t)``, ``[T]`` float32 (for logging)."""
        return tf.exp(-self.log_variances)

    def call(self, losses):
        losses = _stack_losses("UncertaintyWeighting", losses, self.num_tasks)
        s = self.log_variances
        return tf.reduce_sum(tf.exp(-s) * losses + self.log_variance_weight * s)

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks,
                "initial_log_variance": self.initial_log_variance,
                "log_variance_weight": self.log_variance_weight}
