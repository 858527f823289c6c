"""Partitioned normalization (STAR): batch normalization with per-domain statistics and
per-domain scale/shift, computed with segment ops."""
from __future__ import annotations

import numbers

import tensorflow as tf

from ranking.layers.mlp import _check_int, _get_initializer, _PACKAGE
from ranking.layers.scenario.dwg import (domain_index_tensor, smart_cond, split_domain_inputs,
                                        split_domain_shapes, training_flag)


def _check_fraction(name, value, low_open=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (
        0.0 < value < 1.0 if low_open else 0.0 <= value < 1.0)
    if not ok:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{name} must be a float in {interval}, got {value!r}")
    return float(value)


def _check_epsilon(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a float > 0, got {value!r}")
    return float(value)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PartitionedNormalization(tf.keras.layers.Layer):
    """Partitioned normalization (PN) from STAR (Sheng et al., "One Model to Serve All: Star
    Topology Adaptive Recommender for Multi-Domain CTR Prediction", CIKM 2021, section 3.3).

    Batch normalization assumes one data distribution; samples of different domains (countries,
    scenes, in-app vs external traffic) have different feature statistics, so PN keeps them per
    domain. With ``D = num_domains`` and the row's domain ``p`` (0 = unknown)::

        y = (gamma * gamma_p) * (x - mu_p) / sqrt(var_p + epsilon) + (beta + beta_p)

    * ``gamma``, ``beta`` (``[d]``) are shared; ``gamma_p`` (ones) and ``beta_p`` (zeros),
      ``[D, d]``, are the domain's; the unknown domain uses ``gamma``, ``beta`` alone.
    * Training (``training=True``): ``mu_p``, ``var_p`` are the mean and (biased) variance of
      the batch rows of domain ``p`` -- one ``unsorted_segment_sum`` pass for all domains, no
      loop. Unknown-domain rows, and rows of a domain with fewer than ``min_batch_count`` rows in
      the batch (a single row has no variance), use the statistics of the whole batch. The
      gradient flows through the statistics, as in batch normalization.
    * Moving statistics ``moving_mean``/``moving_variance`` ``[D + 1, d]``: row ``p >= 1`` is
      domain ``p``'s, row 0 the shared one (whole batch). After each training batch, every row
      with at least ``min_batch_count`` batch rows (row 0: the whole batch) moves toward the
      batch statistics, ``m <- momentum * m + (1 - momentum) * s``; the variance entered there
      is the unbiased one (``n / (n - 1)``, which matters for the small per-domain counts).
      Other rows are unchanged.
    * Inference: ``mu_p``, ``var_p`` are row ``p`` of the moving statistics; unknown domains
      and indices outside ``[0, D]`` use row 0.

    Statistics and the affine transform are computed in float32 (the weights are float32 and
    not autocast); the output is in the layer's compute dtype.

    Args:
      num_domains: number of known domains D, >= 1.
      momentum: moving-average momentum in ``[0, 1)`` (default 0.99).
      epsilon: variance epsilon, > 0 (default 1e-3).
      center: whether to add ``beta + beta_p``.
      scale: whether to multiply by ``gamma * gamma_p``.
      min_batch_count: int >= 2; a domain needs this many rows in a batch for its own batch
        statistics (and a moving-statistics update).
      beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer: for the shared parameters / all moving-statistics rows.

    Call: ``layer([x, domain_index], training=None)``, ``x: [batch, d]``, ``domain_index: int32
    [batch]`` in ``[0, D]``. Output: ``[batch, d]``.
    """

    def __init__(self, num_domains: int, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, min_batch_count: int = 2,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.num_domains = _check_int("num_domains", num_domains)
        self.momentum = _check_fraction("momentum", momentum)
        self.epsilon = _check_epsilon("epsilon", epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.min_batch_count = _check_int("min_batch_count", min_batch_count, minimum=2)
        self._beta_initializer = _get_initializer("beta_initializer", beta_initializer)
        self._gamma_initializer = _get_initializer("gamma_initializer", gamma_initializer)
        self._moving_mean_initializer = _get_initializer("moving_mean_initializer",
                                                         moving_mean_initializer)
        self._moving_variance_initializer = _get_initializer("moving_variance_initializer",
                                                             moving_variance_initializer)

    def build(self, input_shape):
        d = split_domain_shapes("PartitionedNormalization", input_shape)[-1]
        n = self.num_domains

        def weight(name, shape, initializer, trainable=True, **kwargs):
            return self.add_weight(name, shape=shape, dtype=tf.float32, initializer=initializer,
                                   trainable=trainable, experimental_autocast=False, **kwargs)

        self.gamma = self.domain_gamma = self.beta = self.domain_beta = None
        if self.scale:
            self.gamma = weight("gamma", [d], self._gamma_initializer)
            self.domain_gamma = weight("domain_gamma", [n, d], "ones")
        if self.center:
            self.beta = weight("beta", [d], self._beta_initializer)
            self.domain_beta = weight("domain_beta", [n, d], "zeros")
        moving = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                      aggregation=tf.VariableAggregation.MEAN)
        self.moving_mean = weight("moving_mean", [n + 1, d], self._moving_mean_initializer,
                                  **moving)
        self.moving_variance = weight("moving_variance", [n + 1, d],
                                      self._moving_variance_initializer, **moving)
        super().build(input_shape)

    # --- statistics ------------------------------------------------------------------------
    def batch_statistics(self, x, idx):
        """Per-row-slot batch statistics of float32 ``x [b, d]``.

        Returns ``(mean, variance, count)``: ``[D+1, d]``, ``[D+1, d]``, ``[D+1]``; row 0 holds
        the whole batch's statistics and count, row ``p`` domain ``p``'s (zeros when absent).
        Variances are biased (divided by the count).
        """
        k = self.num_domains + 1
        count = tf.math.unsorted_segment_sum(tf.ones_like(x[:, 0]), idx, k)  # [D+1]
        safe = tf.maximum(count, 1.0)[:, None]
        mean = tf.math.unsorted_segment_sum(x, idx, k) / safe
        dev = x - tf.gather(mean, idx)
        var = tf.math.unsorted_segment_sum(tf.square(dev), idx, k) / safe
        all_mean, all_var = tf.nn.moments(x, axes=[0], keepdims=True)
        batch = tf.cast(tf.shape(x)[0], tf.float32)
        mean = tf.concat([all_mean, mean[1:]], 0)
        var = tf.concat([all_var, var[1:]], 0)
        count = tf.concat([batch[None], count[1:]], 0)
        return mean, var, count

    def _training_statistics(self, x, idx):
        mean, var, count = self.batch_statistics(x, idx)
        own = count >= self.min_batch_count  # [D+1]; row 0 is the whole batch
        use = tf.concat([[True], own[1:]], 0)[:, None]
        row_mean = tf.where(use, mean, mean[:1])  # small domains: whole-batch statistics
        row_var = tf.where(use, var, var[:1])
        self._update_moving(mean, var, count, own)
        return tf.gather(row_mean, idx), tf.gather(row_var, idx)

    def _update_moving(self, mean, var, count, own):
        own = own[:, None]
        m = self.momentum
        correction = (count / tf.maximum(count - 1.0, 1.0))[:, None]  # unbiased variance
        mean, var = tf.stop_gradient(mean), tf.stop_gradient(var * correction)
        self.moving_mean.assign(tf.where(own, m * self.moving_mean + (1 - m) * mean,
                                         self.moving_mean))
        self.moving_variance.assign(tf.where(own, m * self.moving_variance + (1 - m) * var,
                                             self.moving_variance))

    def _moving_statistics(self, idx):
        return (tf.gather(tf.convert_to_tensor(self.moving_mean), idx),
                tf.gather(tf.convert_to_tensor(self.moving_variance), idx))

    # --- forward ---------------------------------------------------------------------------
    def call(self, inputs, training=None):
        x, idx = split_domain_inputs("PartitionedNormalization", inputs)
        idx = domain_index_tensor(idx, self.num_domains)
        out_dtype = x.dtype
        x = tf.cast(x, tf.float32)
        flag = training_flag(training)
        mean, var = smart_cond(flag, lambda: self._training_statistics(x, idx),
                               lambda: self._moving_statistics(idx))
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            table = tf.concat([tf.ones_like(self.gamma)[None], self.domain_gamma], 0)
            y = y * (self.gamma * tf.gather(table, idx))
        if self.center:
            table = tf.concat([tf.zeros_like(self.beta)[None], self.domain_beta], 0)
            y = y + (self.beta + tf.gather(table, idx))
        return tf.cast(y, out_dtype)

    def compute_output_shape(self, input_shape):
        return split_domain_shapes("PartitionedNormalization", input_shape)

    def get_config(self):
        ser = tf.keras.initializers.serialize
        return {
            **super().get_config(), "num_domains": self.num_domains, "momentum": self.momentum,
            "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
            "min_batch_count": self.min_batch_count,
            "beta_initializer": ser(self._beta_initializer),
            "gamma_initializer": ser(self._gamma_initializer),
            "moving_mean_initializer": ser(self._moving_mean_initializer),
            "moving_variance_initializer": ser(self._moving_variance_initializer),
        }
