r"""Binary focal loss from logits (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

Derivation. With logit ``z``, ``p = sigmoid(z)`` and a label ``y`` in ``{0, 1}``, let
``p_t = p`` if ``y = 1`` else ``1 - p`` (the probability given to the true class) and
``alpha_t = alpha`` if ``y = 1`` else ``1 - alpha``. Cross-entropy is ``-log p_t``; the focal
loss multiplies it by the modulating factor ``(1 - p_t)^gamma``:

    FL(z, y) = -alpha_t (1 - p_t)^gamma log p_t.

An example the model already gets right (``p_t -> 1``) has its loss shrunk by a factor that
goes to 0, so the many easy examples (in ranking: the mass of obvious negatives, and heavy
users whose behaviour the model has already learnt) stop dominating the gradient, and the hard
ones (light users, rare positives) count relatively more. ``gamma = 0`` gives back
(alpha-weighted) cross-entropy; ``alpha`` (weight of the positive class, ``1 - alpha`` of the
negative) rebalances the classes; ``alpha=None`` weighs both by 1.

Numerically stable form. ``p`` itself underflows / rounds to 1 for large ``|z|``, so nothing
is computed from ``p``. Using ``log sigmoid(z) = -softplus(-z)`` and
``1 - sigmoid(z) = sigmoid(-z)``:

    log p       = -softplus(-z)          log(1 - p)       = -softplus(z)
    p^gamma     = exp(-gamma softplus(-z))   (1 - p)^gamma = exp(-gamma softplus(z))

Every term is finite for every finite ``z`` (softplus never overflows in TensorFlow), and the
exponential form has a finite gradient at ``gamma = 0`` and at ``p`` in ``{0, 1}``, where
``pow(0, gamma)`` would not. For a label ``y`` in ``[0, 1]`` (soft labels, label smoothing) the
loss is the label-weighted sum of the two cases,

    FL = y alpha (1 - p)^gamma (-log p) + (1 - y)(1 - alpha) p^gamma (-log(1 - p)),

which for hard labels is the formula above and for ``gamma = 0, alpha = None`` is exactly
binary cross-entropy ``-[y log p + (1 - y) log(1 - p)]``, soft labels included.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import tensorflow as tf

_PACKAGE = "ranking.losses"


def _check_gamma(value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"gamma must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_alpha(value: Any):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"alpha must be None or a number in [0, 1], got {value!r}")
    return float(value)


def binary_focal_loss(labels, logits, gamma: float = 2.0, alpha: float | None = 0.25):
    r"""Per-example binary focal loss from logits (see the module docstring for the derivation).

    Args:
      labels: labels in ``[0, 1]`` (hard ``{0, 1}`` or soft), broadcastable to ``logits``.
      logits: logits ``z`` of any shape (e.g. ``[batch]`` or ``[batch, 1]``), any float dtype.
      gamma: focusing parameter, >= 0 (2, paper); 0 = no down-weighting of easy examples.
      alpha: weight of the positive class in ``[0, 1]`` (0.25, paper; negatives get
        ``1 - alpha``), or ``None`` for weight 1 on both.

    Returns:
      float32 losses with the broadcast shape of ``labels`` and ``logits``, not reduced.
      ``gamma=0, alpha=None`` equals ``tf.nn.sigmoid_cross_entropy_with_logits``.
    """
    gamma, alpha = _check_gamma(gamma), _check_alpha(alpha)
    z = tf.cast(logits, tf.float32)
    y = tf.cast(labels, tf.float32)
    neg_log_p = tf.nn.softplus(-z)     # -log p
    neg_log_1mp = tf.nn.softplus(z)    # -log(1 - p)
    pos_term, neg_term = neg_log_p, neg_log_1mp
    if gamma:
        pos_term = tf.exp(-gamma * neg_log_1mp) * pos_term   # (1 - p)^gamma (-log p)
        neg_term = tf.exp(-gamma * neg_log_p) * neg_term     # p^gamma (-log(1 - p))
    if alpha is not None:
        pos_term, neg_term = alpha * pos_term, (1.0 - alpha) * neg_term
    return y * pos_term + (1.0 - y) * neg_term


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class BinaryFocalLoss(tf.keras.losses.Loss):
    r"""Keras loss: :func:`binary_focal_loss` from logits, averaged over the last axis.

    Drop-in for ``tf.keras.losses.BinaryCrossentropy(from_logits=True)`` (same reduction and
    ``sample_weight`` handling: per-example losses are averaged over the last axis, then
    weighted and reduced by ``reduction``); ``gamma=0, alpha=None`` gives the same values.

    Args:
      gamma: focusing parameter, >= 0.
      alpha: positive-class weight in ``[0, 1]`` or ``None``.
      reduction, name: as for ``tf.keras.losses.Loss``.

    Call: ``loss(y_true, y_pred_logits, sample_weight=None)``.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25,
                 reduction=tf.keras.losses.Reduction.AUTO, name: str = "binary_focal_loss"):
        super().__init__(reduction=reduction, name=name)
        self.gamma = _check_gamma(gamma)
        self.alpha = _check_alpha(alpha)

    def call(self, y_true, y_pred):
        return tf.reduce_mean(binary_focal_loss(y_true, y_pred, self.gamma, self.alpha),
                              axis=-1)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}
