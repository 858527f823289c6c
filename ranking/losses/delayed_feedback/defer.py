r"""DEFER: Gu et al., "Real Negatives Matter: Continuous Training with Real Negatives for
Delayed Feedback Modeling", KDD 2021.

Stream. The ES-DFM stream (first copy at ``click + w`` with its in-window label), and every
click is ingested a second time: an in-window positive as a positive duplicate, a delayed
positive at its conversion (``label = 1``), a real negative when its attribution window
closes (``label = 0``). With ``p1``, ``p0``, ``p_dp`` as in
:mod:`~ranking.losses.delayed_feedback.esdfm`, the two copies of a click are

    in-window positive (p1 - p_dp):  (1, 1)
    delayed positive   (p_dp):       (0, 1)      the first copy is a fake negative
    real negative      (p0):         (0, 0)

Every click appears exactly twice, so ``q(x) = p(x)`` holds exactly (not as an assumption),
and

    q(y=1 | x) = (2 (p1 - p_dp) + p_dp) / 2 = p1 - p_dp / 2,
    q(y=0 | x) = (p_dp + 2 p0) / 2          = p0 + p_dp / 2.

Importance weights:

    w+ = p1 / (p1 - p_dp / 2),        w- = p0 / (p0 + p_dp / 2),

with ``p1`` the model's own stop-gradient prediction and ``p_dp`` an auxiliary
delayed-positive head (its labels: :mod:`~ranking.losses.delayed_feedback.auxiliary`; in this
stream every duplicate also carries a final ``delayed_positive`` label for it). Bounds: each
true positive has a positive duplicate, so ``q(y=1 | x) >= p1 / 2`` and ``1 <= w+ <= 2``; each
real negative is negative twice, so ``w- <= 1``. Two separately fitted models can break the
first (``f_dp > f`` would make ``w+`` negative or infinite), so the denominator is floored at
``p1 / 2`` (equivalently ``f_dp`` is capped at ``f``). With ``f_dp = 0`` the loss is plain
cross-entropy.
"""
from __future__ import annotations

import tensorflow as tf

from ranking.losses.delayed_feedback.importance import (as_logits, model_probability,
                                                        probability_like, weighted_bce)


def defer_weights(prob, dp_prob):
    """``(w+, w-) = (p / max(p - f_dp/2, p/2), (1 - p) / (1 - p + f_dp/2))`` (module doc).

    Args:
      prob: the conversion probability ``p`` (the model's own, stop-gradient), in ``(0, 1)``.
      dp_prob: the delayed-positive probability ``f_dp`` in ``[0, 1]``.
    """
    p, dp = tf.cast(prob, tf.float32), tf.cast(dp_prob, tf.float32)
    q_pos = tf.maximum(p - 0.5 * dp, 0.5 * p)
    return p / q_pos, (1.0 - p) / (1.0 - p + 0.5 * dp)


def defer_loss(labels, logits, dp_prob) -> tf.Tensor:
    """Per-example DEFER loss: cross-entropy weighted by :func:`defer_weights` of the model's
    own prediction and the auxiliary ``dp_prob`` (both without gradient).

    Args:
      labels: the stream's 0/1 labels (first copies and duplicates alike).
      logits: the CVR logits ``z``.
      dp_prob: ``f_dp(x)`` in ``[0, 1]``, one value per logit.

    Returns:
      float32 losses shaped like ``logits``, not reduced.
    """
    z = as_logits(logits)
    dp = probability_like("dp_prob", dp_prob, z)
    return weighted_bce(labels, z, *defer_weights(model_probability(z), dp))
