r"""Fake-negative weighting (FNW) and calibration (FNC): Ktena et al., "Addressing Delayed
Feedback for Continuous Training with Neural Networks in CTR prediction", RecSys 2019.

Stream. Every click enters at once as a negative (``label = 0``); a click that converts is
re-ingested at its conversion as a positive duplicate (``label = 1``). A click with features
``x`` thus gives one negative, plus one positive with probability ``p1(x) = p(y=1 | x)``, so
among the stream samples of ``x``

    q(y=1 | x) = p1 / (1 + p1),        q(y=0 | x) = 1 / (1 + p1).

FNW. Taking ``q(x) = p(x)`` as the paper does, the importance weights ``p(y | x) / q(y | x)``
(:mod:`~ranking.losses.delayed_feedback.importance`) are

    w+ = p1 / (p1 / (1 + p1))          = 1 + p1,
    w- = (1 - p1) / (1 / (1 + p1))     = (1 - p1)(1 + p1),

and ``p1`` is replaced by the model's own prediction ``f = sigmoid(z)`` under stop-gradient.
Self-consistency: with the weights taken at ``f``, the expected gradient over the samples of
``x`` is ``d/dz [q1 w+ softplus(-z) + q0 w- softplus(z)] = -q1 (1 + f)(1 - f) + q0 (1 - f)(1 +
f) f = (1 - f^2)(f - p1) / (1 + p1)``: zero exactly at ``f = p1`` and pointing towards it.

The stream's feature marginal is really ``q(x) = p(x)(1 + p1(x)) / (1 + E[p1])`` (converting
clicks appear twice). The weights make each ``x``'s conditional risk exact, so the minimizer
``f(x) = p1(x)`` is unchanged; the published weights only tilt the emphasis across ``x`` by
``1 + p1(x) <= 2``. Kept as published.

FNC. Train with plain cross-entropy on the same stream: the model learns ``q = q(y=1 | x) =
p1 / (1 + p1)``; invert at inference, ``p1 = q / (1 - q)``, which for ``q = sigmoid(z)`` is
simply ``exp(z)``. A fitted model has ``q <= 1/2`` (``z <= 0``); larger values are clipped to 1.
"""
from __future__ import annotations

import tensorflow as tf

from ranking.losses.delayed_feedback.importance import (as_logits, bce_loss,
                                                        model_probability, weighted_bce)
from ranking.losses.focal import _PACKAGE


def fnw_weights(prob):
    """``(w+, w-) = (1 + p, (1 - p)(1 + p))`` for the conversion probability ``p`` (module doc)."""
    p = tf.cast(prob, tf.float32)
    return 1.0 + p, (1.0 - p) * (1.0 + p)


def fnw_loss(labels, logits) -> tf.Tensor:
    """Per-example FNW loss on the fake-negative stream: cross-entropy weighted by
    :func:`fnw_weights` of the model's own stop-gradient prediction.

    Args:
      labels: the stream's 0/1 labels (0 for the immediate copy, 1 for the positive duplicate).
      logits: the CVR logits ``z`` (any shape; ``labels`` has one value per logit).

    Returns:
      float32 losses shaped like ``logits``, not reduced.
    """
    z = as_logits(logits)
    return weighted_bce(labels, z, *fnw_weights(model_probability(z)))


def fnc_loss(labels, logits) -> tf.Tensor:
    """Per-example FNC training loss: plain cross-entropy on the fake-negative stream (the
    model learns ``p1 / (1 + p1)``; :func:`fnc_calibrate` undoes it)."""
    return bce_loss(labels, logits)


def fnc_calibrate(logits) -> tf.Tensor:
    """The FNC conversion probability ``q / (1 - q) = exp(z)``, clipped to 1 (float32)."""
    return tf.exp(tf.minimum(as_logits(logits), 0.0))


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class FakeNegativeWeightedLoss(tf.keras.losses.Loss):
    """Keras loss: :func:`fnw_loss` from logits, averaged over the last axis.

    A drop-in for ``tf.keras.losses.BinaryCrossentropy(from_logits=True)`` on a model trained
    on the fake-negative stream (same reduction and ``sample_weight`` handling).

    Args:
      reduction, name: as for ``tf.keras.losses.Loss``.

    Call: ``loss(y_true_stream_labels, y_pred_logits, sample_weight=None)``.
    """

    def __init__(self, reduction=tf.keras.losses.Reduction.AUTO,
                 name: str = "fake_negative_weighted_loss"):
        super().__init__(reduction=reduction, name=name)

    def call(self, y_true, y_pred):
        return tf.reduce_mean(fnw_loss(y_true, y_pred), axis=-1)
