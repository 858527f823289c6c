r"""Pairwise approximate-AUC ranking loss, alone and added to binary cross-entropy.

Derivation. The AUC of scores ``s`` is the probability that a random positive outranks a
random negative; on a batch with positives ``P`` and negatives ``N``,

    AUC = 1/(|P||N|) sum_{i in P, j in N} 1[s_i > s_j]        (ties count 1/2)
    1 - AUC = 1/(|P||N|) sum_{i in P, j in N} 1[s_i - s_j < 0].

The step ``1[d < 0]`` of the margin ``d_ij = s_i - s_j`` has zero gradient almost
everywhere, so it is replaced by a smooth surrogate of temperature ``tau > 0``:

* ``"sigmoid"``: ``sigmoid(-d / tau)``, which tends to the step as ``tau -> 0``; the mean is a
  smooth estimate of ``1 - AUC`` itself (the Wilcoxon-Mann-Whitney statistic, Yan et al.,
  ICML 2003). Bounded, so a badly mis-ordered pair cannot dominate -- but its gradient also
  vanishes for such pairs.
* ``"softplus"`` (default): ``softplus(-d / tau) = log(1 + exp(-d / tau))``, the logistic
  pairwise (RankNet, Burges et al., ICML 2005) loss. Convex in the scores, and an upper bound:
  ``softplus(-d / tau) / log 2 >= 1[d <= 0]``, so minimizing it pushes ``1 - AUC`` down; the
  gradient ``-sigmoid(-d / tau) / tau`` stays large for mis-ordered pairs.

The loss is the mean over the pairs of the batch. Scores are the logits (AUC is invariant to
the monotone sigmoid, and logits do not saturate). With sample weights ``w`` (for instance a
click mask, so that a CVR ranking loss uses clicked rows only) pair ``(i, j)`` weighs
``w_i w_j``:

    L_pair = sum_{ij} y_i (1 - y_j) w_i w_j l(d_ij) / sum_{ij} y_i (1 - y_j) w_i w_j.

A batch without a positive or without a negative (frequent for sparse conversions) has no pair:
``L_pair = 0`` with zero gradient, never ``0 / 0`` (``divide_no_nan``).

Cross-entropy calibrates (it fits ``p = P(y | x)``) but weighs every example separately;
the pairwise term optimizes the ordering that AUC measures. The combined loss (seed 002) is

    L = mean_i w_i BCE(y_i, z_i) + lambda * L_pair.

Cost: ``O(batch^2)`` time and memory (a ``[batch, batch]`` matrix; 4096 rows -> 64 MB in
float32). Under a distribution strategy the pairs are those of each replica's batch.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import tensorflow as tf

from ranking.losses.focal import _PACKAGE

SURROGATES = ("softplus", "sigmoid")


def _check_tau(value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"tau must be a finite number > 0, got {value!r}")
    return float(value)


def _check_surrogate(value: Any) -> str:
    if value not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {value!r}")
    return value


def _check_pairwise_weight(value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"pairwise_weight must be a finite number >= 0, got {value!r}")
    return float(value)


def _flatten(name: str, value, size=None) -> tf.Tensor:
    flat = tf.reshape(tf.cast(value, tf.float32), [-1])
    if size is not None and flat.shape[0] is not None and flat.shape[0] != size:
        raise ValueError(f"{name} has {flat.shape[0]} values, expected {size} (one per logit)")
    return flat


def pairwise_auc_loss(labels, logits, tau: float = 1.0, surrogate: str = "softplus",
                      sample_weight=None) -> tf.Tensor:
    r"""Mean surrogate loss over the (positive, negative) pairs of the batch (module docstring).

    Args:
      labels: labels in ``{0, 1}``, ``[batch]`` or ``[batch, 1]`` (values in ``[0, 1]`` act as
        fractional memberships of both classes).
      logits: scores, same number of values as ``labels``.
      tau: temperature > 0 of the surrogate.
      surrogate: ``"softplus"`` (logistic pairwise loss) or ``"sigmoid"`` (smooth 1 - AUC).
      sample_weight: optional non-negative per-example weights (e.g. a 0/1 mask), same number
        of values; pair ``(i, j)`` weighs ``w_i w_j``.

    Returns:
      A float32 scalar; 0 (with zero gradient) when the batch has no weighted pair.
    """
    tau, surrogate = _check_tau(tau), _check_surrogate(surrogate)
    s = _flatten("logits", logits)
    size = s.shape[0]
    y = _flatten("labels", labels, size)
    pos, neg = y, 1.0 - y
    if sample_weight is not None:
        w = _flatten("sample_weight", sample_weight, size)
        pos, neg = pos * w, neg * w
    pair_weight = pos[:, None] * neg[None, :]              # [B, B]: i positive, j negative
    margin = (s[:, None] - s[None, :]) / tau               # d_ij / tau
    pair_loss = tf.nn.softplus(-margin) if surrogate == "softplus" else tf.sigmoid(-margin)
    return tf.math.divide_no_nan(tf.reduce_sum(pair_weight * pair_loss),
                                 tf.reduce_sum(pair_weight))


def bce_with_pairwise_auc_loss(labels, logits, pairwise_weight: float = 1.0, tau: float = 1.0,
                               surrogate: str = "softplus", sample_weight=None) -> tf.Tensor:
    r"""``mean_i w_i BCE(y_i, z_i) + pairwise_weight * pairwise_auc_loss`` (a float32 scalar).

    The BCE mean divides by the batch size, as Keras' ``SUM_OVER_BATCH_SIZE`` does (a 0/1
    ``sample_weight`` mask is *not* renormalized by its count; use
    :func:`~ranking.losses.masked_mean` for that). Arguments as for :func:`pairwise_auc_loss`;
    ``pairwise_weight`` (lambda) is a finite number >= 0.
    """
    lam = _check_pairwise_weight(pairwise_weight)
    z = _flatten("logits", logits)
    y = _flatten("labels", labels, z.shape[0])
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z)
    if sample_weight is not None:
        bce = bce * _flatten("sample_weight", sample_weight, z.shape[0])
    total = tf.reduce_mean(bce)
    if lam:
        total += lam * pairwise_auc_loss(y, z, tau, surrogate, sample_weight)
    return total


class _BatchLoss(tf.keras.losses.Loss):
    """A Keras loss whose value is a function of the whole batch (not a mean of per-example
    values): ``__call__`` returns the scalar directly, sample weights are passed through."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        with tf.name_scope(self.name or "loss"):
            return self._batch_loss(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return self._batch_loss(y_true, y_pred, None)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PairwiseAUCLoss(_BatchLoss):
    """Keras loss: :func:`pairwise_auc_loss` of ``(y_true, y_pred_logits, sample_weight)``.

    Args:
      tau, surrogate: as for :func:`pairwise_auc_loss`.
      name: loss name. (``reduction`` is accepted for Keras compatibility; the loss is always
        the mean over pairs.)
    """

    def __init__(self, tau: float = 1.0, surrogate: str = "softplus",
                 reduction=tf.keras.losses.Reduction.AUTO, name: str = "pairwise_auc_loss"):
        super().__init__(reduction=reduction, name=name)
        self.tau = _check_tau(tau)
        self.surrogate = _check_surrogate(surrogate)

    def _batch_loss(self, y_true, y_pred, sample_weight):
        return pairwise_auc_loss(y_true, y_pred, self.tau, self.surrogate, sample_weight)

    def get_config(self):
        return {**super().get_config(), "tau": self.tau, "surrogate": self.surrogate}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class BCEWithPairwiseAUCLoss(_BatchLoss):
    """Keras loss: :func:`bce_with_pairwise_auc_loss`, cross-entropy plus
    ``pairwise_weight`` x the pairwise approximate-AUC loss, from logits.

    With ``pairwise_weight=0`` it equals ``tf.keras.losses.BinaryCrossentropy(from_logits=True)``
    on ``[batch, 1]`` (or ``[batch]``) inputs, sample weights included.

    Args:
      pairwise_weight: lambda, a finite number >= 0.
      tau, surrogate: as for :func:`pairwise_auc_loss`.
      name: loss name (``reduction`` is accepted and ignored, as for :class:`PairwiseAUCLoss`).
    """

    def __init__(self, pairwise_weight: float = 1.0, tau: float = 1.0,
                 surrogate: str = "softplus", reduction=tf.keras.losses.Reduction.AUTO,
                 name: str = "bce_with_pairwise_auc_loss"):
        super().__init__(reduction=reduction, name=name)
        self.pairwise_weight = _check_pairwise_weight(pairwise_weight)
        self.tau = _check_tau(tau)
        self.surrogate = _check_surrogate(surrogate)

    def _batch_loss(self, y_true, y_pred, sample_weight):
        return bce_with_pairwise_auc_loss(y_true, y_pred, self.pairwise_weight, self.tau,
                                          self.surrogate, sample_weight)

    def get_config(self):
        return {**super().get_config(), "pairwise_weight": self.pairwise_weight,
                "tau": self.tau, "surrogate": self.surrogate}
