r"""ES-DFM: Yang et al., "Capturing Delayed Feedback in Conversion Rate Prediction via
Elapsed-Time Sampling", AAAI 2021.

Stream. Each click waits an elapsed-time window ``w``; its first copy enters at ``click + w``
with the label observed then (converted inside the window or not). A click converting after
``w`` is re-ingested at its conversion as a positive duplicate (``delayed_positive = 1``).
Notation, for a click with features ``x`` and conversion delay ``d``:

    p1(x)   = p(y=1 | x),             p0 = 1 - p1,
    p_dp(x) = p(y=1, d > w | x)       (a delayed positive: a fake negative at the window),
    p_rn(x) = p0 / (p0 + p_dp)        (an observed negative at the window is a real one).

Per click of ``x`` the stream holds the first copy (positive with probability ``p1 - p_dp``,
negative with ``p0 + p_dp``) and, with probability ``p_dp``, a positive duplicate: ``1 + p_dp``
samples, so

    q(y=1 | x) = p1 / (1 + p_dp),      q(y=0 | x) = (p0 + p_dp) / (1 + p_dp).

Importance weights (``q(x) = p(x)``, as the paper takes it):

    w+ = p1 / q(y=1 | x)  = 1 + p_dp,
    w- = p0 / q(y=0 | x)  = (1 + p_dp) p0 / (p0 + p_dp) = (1 + p_dp) p_rn.

``p_dp`` and ``p_rn`` come from two auxiliary heads, ``f_dp`` (the fake-negative /
delayed-positive probability) and ``f_rn`` (the real-negative probability), fitted on matured
clicks (labels in :mod:`~ranking.losses.delayed_feedback.auxiliary`); both are constants of
this loss. With ``f_dp = 0`` (no conversion arrives late) every observed negative is real,
``f_rn = 1``, and the loss is plain cross-entropy. As for FNW the true stream marginal is
``q(x) ~ p(x)(1 + p_dp(x))``: the per-``x`` risk, hence the minimizer ``f(x) = p1(x)``, is
exact, the emphasis across ``x`` is tilted by ``1 + p_dp(x)``.
"""
from __future__ import annotations

import tensorflow as tf

from ranking.losses.delayed_feedback.importance import (as_logits, probability_like,
                                                        weighted_bce)


def esdfm_weights(dp_prob, rn_prob):
    """``(w+, w-) = (1 + f_dp, (1 + f_dp) f_rn)`` (module docstring), float32."""
    dp, rn = tf.cast(dp_prob, tf.float32), tf.cast(rn_prob, tf.float32)
    return 1.0 + dp, (1.0 + dp) * rn


def esdfm_loss(labels, logits, dp_prob, rn_prob) -> tf.Tensor:
    """Per-example ES-DFM loss: cross-entropy weighted by :func:`esdfm_weights`.

    Args:
      labels: the stream's 0/1 labels.
      logits: the CVR logits ``z``.
      dp_prob: ``f_dp(x)``, the auxiliary delayed-positive probability, in ``[0, 1]``.
      rn_prob: ``f_rn(x)``, the auxiliary real-negative probability, in ``[0, 1]``.
      All per-example inputs have one value per logit.

    Returns:
      float32 losses shaped like ``logits``, not reduced; no gradient reaches the auxiliary
      probabilities.
    """
    z = as_logits(logits)
    dp = probability_like("dp_prob", dp_prob, z)
    rn = probability_like("rn_prob", rn_prob, z)
    return weighted_bce(labels, z, *esdfm_weights(dp, rn))
