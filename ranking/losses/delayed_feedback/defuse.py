r"""DEFUSE: Chen et al., "Asymptotically Unbiased Estimation for Delayed Feedback Modeling via
Label Correction", WWW 2022.

Stream. The ES-DFM stream (:mod:`~ranking.losses.delayed_feedback.esdfm`; same ``p1``,
``p0``, ``p_dp``). DEFUSE splits its samples into four types; per click of ``x``:

    IP  immediate positive  first copy, label 1              mass p1 - p_dp
    FN  fake negative       first copy, label 0, converts    mass p_dp
    RN  real negative       first copy, label 0, never       mass p0
    DP  delayed positive    duplicate, label 1               mass p_dp

``1 + p_dp`` samples per click, so with ``q(x) = p(x)`` (as ES-DFM) ``q(type | x) =
mass / (1 + p_dp)``. The true risk of ``x`` is ``(p1 - p_dp) l1 + p_dp l1 + p0 l0`` (``l1 =
-log f``, ``l0 = -log(1 - f)``). DEFUSE gives each type its own weight and *corrects the
label* of the fake negatives (their loss is ``l1``):

    IP: w_ip l1 with q_ip w_ip = p1 - p_dp      ->  w_ip = 1 + p_dp
    RN: w_rn l0 with q_rn w_rn = p0             ->  w_rn = 1 + p_dp
    FN, DP: (w_fn + w_dp) q_dp l1 = p_dp l1     ->  w_fn + w_dp = 1 + p_dp;
            DEFUSE keeps the duplicate at w_dp = 1 and puts w_fn = p_dp on the fake negative.

An observed negative is FN or RN, which the stream cannot tell apart when it is trained on
(its conversion, if any, is in the future). Its loss is the expectation over the two, with
``z(x) = P(FN | observed negative, x) = p_dp / (p_dp + p0) = 1 - p_rn``:

    observed negative:  z p_dp l1 + (1 - z)(1 + p_dp) l0.

Check, per ``x`` (dividing by ``1 + p_dp``): IP gives ``(p1 - p_dp) l1``, DP ``p_dp l1 / (1 +
p_dp)``, the observed negatives (mass ``p_dp + p0``) give ``p_dp^2 l1 / (1 + p_dp) + p0 l0``;
the total is ``p1 l1 + p0 l0``, the true risk. Per row the coefficients on ``l1`` and ``l0`` are

    IP (label 1, delayed_positive 0):   (1 + f_dp,        0)
    DP (label 1, delayed_positive 1):   (1,               0)
    observed negative (label 0):        (z f_dp,  (1 - z)(1 + f_dp)),   z = 1 - f_rn,

with ``f_dp``, ``f_rn`` the ES-DFM auxiliary heads (stop-gradient). ``f_dp = 0, f_rn = 1``
gives plain cross-entropy.
"""
from __future__ import annotations

import tensorflow as tf

from ranking.losses.delayed_feedback.importance import (as_field, as_logits, check_binary,
                                                        check_implies,
                                                        importance_weighted_bce, labels_like,
                                                        probability_like)


def defuse_weights(labels, delayed_positive, dp_prob, rn_prob):
    """Per-row coefficients ``(c1, c0)`` on ``-log f`` and ``-log(1 - f)`` (module docstring).

    Args:
      labels, delayed_positive: 0/1 stream fields (``delayed_positive = 1`` needs label 1).
      dp_prob, rn_prob: ``f_dp`` and ``f_rn`` in ``[0, 1]``.
      All four have the same shape.
    """
    y, dpos = tf.cast(labels, tf.float32), tf.cast(delayed_positive, tf.float32)
    dp, rn = tf.cast(dp_prob, tf.float32), tf.cast(rn_prob, tf.float32)
    fake = 1.0 - rn                                   # z = P(fake negative | observed 0, x)
    immediate = y * (1.0 - dpos)
    pos_coef = immediate * (1.0 + dp) + dpos + (1.0 - y) * fake * dp
    neg_coef = (1.0 - y) * (1.0 - fake) * (1.0 + dp)
    return pos_coef, neg_coef


def defuse_loss(labels, logits, delayed_positive, dp_prob, rn_prob) -> tf.Tensor:
    """Per-example DEFUSE loss on the ES-DFM stream (module docstring).

    Args:
      labels: the stream's 0/1 labels.
      logits: the CVR logits ``z``.
      delayed_positive: 1 on delayed-positive duplicates, else 0.
      dp_prob: ``f_dp(x)``, the auxiliary delayed-positive probability, in ``[0, 1]``.
      rn_prob: ``f_rn(x)``, the auxiliary real-negative probability, in ``[0, 1]``.
      All per-example inputs have one value per logit.

    Returns:
      float32 losses shaped like ``logits``, not reduced; no gradient reaches the auxiliary
      probabilities.
    """
    z = as_logits(logits)
    y = labels_like(labels, z)
    dpos = check_binary("delayed_positive", as_field("delayed_positive", delayed_positive, z))
    check_implies("delayed_positive", dpos, "label", y)
    dp = probability_like("dp_prob", dp_prob, z)
    rn = probability_like("rn_prob", rn_prob, z)
    return importance_weighted_bce(z, *defuse_weights(y, dpos, dp, rn))
