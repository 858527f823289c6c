r"""Net conversion (bought and not refunded): the cascade, a direct head, and seed 004's
importance-sampling loss over three observation moments.

A click's net label is ``y = 1`` iff it converts and the conversion is never refunded. Both
events are delayed (conversions after the click, refunds after the conversion), so the label
observed at training time can be wrong both ways.

1. Cascade. By the chain rule ``P(pay, no refund | x) = P(pay | x) P(no refund | pay, x)``:

       pNet = pCVR * (1 - pRefund|conv).

   The refund head estimates ``P(refund | converted, x)`` and is trained on converted rows
   only (:func:`refund_given_conversion_loss`): trained on every click it would learn
   ``P(refund | x) = pCVR * pRefund|conv`` and the product would count ``pCVR`` twice. A
   converted row's "not refunded" is final only when its refund window has closed: pass the
   :func:`~ranking.losses.delayed_feedback.matured_mask` as ``matured``. The product is formed
   in log space (:func:`cascade_net_cvr_logit`). Seed 004's caveat: with sparse refunds the
   refund head becomes over-confident (refund PCOC 5.88) and drags the net-CVR PCOC down
   (0.72); TESLA reports the cascade ahead of a direct head (AUC .7525 vs .7514, PCOC 1.039
   vs 1.237). Compare both per domain.

2. Direct head: one logit on the net label, plain cross-entropy (:func:`direct_net_cvr_loss`)
   on whatever stream provides the label.

3. Importance sampling (seed 004). Following DEFER, every click enters the stream three
   times, with the net label observed at (1) the end of the waiting window ``w``, (2) after
   the delayed conversions, (3) after the delayed refunds (the final label). With the six
   kinds of click, the three copies' labels are

   =======================================  =======  =======  ========================
   click                                    copies   final y  counted in
   =======================================  =======  =======  ========================
   never converts                           0 0 0    0
   converts in window, never refunded (TP)  1 1 1    1
   converts in window, refunded in window   0 0 0    0
   converts in window, refunded later (FP)  1 1 0    0        P_dr
   converts later, never refunded (FN)      0 1 1    1        P_dp
   converts later, refunded (LL)            0 1 0    0        P_dr and P_dp
   =======================================  =======  =======  ========================

   where ``P_dr(x)`` is the probability that a refund arrives after the window (a *delayed
   refund*) and ``P_dp(x)`` that the conversion arrives after the window (a *delayed
   conversion*, refunded or not). Three copies per click give ``q(x) = p(x)`` exactly, and
   counting positive copies:

       q(y=1 | x) = TP + 2/3 FP + 2/3 FN + 1/3 LL
                  = p(y=1 | x) + 2/3 P_dr(x) - 1/3 P_dp(x)        (p(y=1 | x) = TP + FN),
       q(y=0 | x) = 1 - q(y=1 | x)
                  = p(y=0 | x) - 2/3 P_dr(x) + 1/3 P_dp(x).

   The first line is the notes' ``q(x, y=1) = p(x, y=1) + 2/3 P_dr(x) - 1/3 P_dp(x)``. Their
   second line, ``q(x, y=0) = p(x, y=1) + 2/3 P_dp(x) - 1/3 P_dr(x)``, has two errors: it
   repeats ``p(x, y=1)`` where ``p(x, y=0)`` is meant, and it mirrors the delay terms (the
   correct ones are ``- 2/3 P_dr + 1/3 P_dp``); with it, ``q(x, 0) + q(x, 1)`` would be
   ``p(x)(1 + (P_dr + P_dp) / 3)`` instead of ``q(x) = p(x)``. Their ``w-`` line, which
   repeats ``w+``'s ratio ``p(x, y=1) / q(x, y=1)``, is fixed accordingly. The weights are

       w+ = p(y=1 | x) / (p(y=1 | x) + 2/3 P_dr(x) - 1/3 P_dp(x)),
       w- = p(y=0 | x) / (p(y=0 | x) - 2/3 P_dr(x) + 1/3 P_dp(x)),

   and the loss is the notes' ``L = -sum[y w+ log f(x) + (1 - y) w- log(1 - f(x))]`` over the
   stream. ``p(y=1 | x)`` is the model's own stop-gradient prediction (as in DEFER);
   ``P_dr``, ``P_dp`` come from two auxiliary heads (:func:`net_delay_heads_loss`), all
   without gradient. Bounds: a true positive is positive on at least two of its three copies
   (``q(y=1 | x) >= 2/3 p(y=1 | x)``, ``w+ <= 3/2``) and a true negative negative on at least
   one (``q(y=0 | x) >= 1/3 p(y=0 | x)``, ``w- <= 3``); separately fitted heads can break
   them, so the denominators are floored there. ``P_dr = P_dp = 0`` gives cross-entropy.
"""
from __future__ import annotations

import tensorflow as tf

from ranking.layers.heads.esmm import ctcvr_logit
from ranking.losses.delayed_feedback.importance import (as_field, as_logits, bce_loss,
                                                        check_binary, check_implies,
                                                        labels_like, model_probability,
                                                        probability_like, weighted_bce)
from ranking.losses.task_weighting import masked_mean


# ------------------------------------------------------------------------------ cascade
def cascade_net_cvr_logit(cvr_logits, refund_logits) -> tf.Tensor:
    """The logit of ``pCVR * (1 - pRefund|conv) = sigmoid(a) * sigmoid(-b)``, in log space.

    ``1 - sigmoid(b) = sigmoid(-b)``, so this is the ESMM product logit of ``(a, -b)``
    (:func:`ranking.layers.heads.esmm.ctcvr_logit`): finite for all finite logits, and
    cross-entropy from it never takes ``log 0``.
    """
    return ctcvr_logit(cvr_logits, -as_logits(refund_logits))


def cascade_net_cvr(cvr_logits, refund_logits) -> tf.Tensor:
    """``pNet = sigmoid(a) * (1 - sigmoid(b))`` (float32)."""
    return tf.sigmoid(as_logits(cvr_logits)) * tf.sigmoid(-as_logits(refund_logits))


def refund_given_conversion_loss(refund_labels, refund_logits, converted,
                                 matured=None) -> tf.Tensor:
    """Cross-entropy of the refund head averaged over converted (and matured) rows: a scalar,
    0.0 when no row counts; other rows give no loss and no gradient.

    Args:
      refund_labels: 0/1 refund labels (1 requires ``converted = 1``).
      refund_logits: the refund head's logits.
      converted: 0/1, the click converted (as known at training time).
      matured: optional 0/1 mask of rows whose refund window has closed.
    """
    z = as_logits(refund_logits)
    conv = check_binary("converted", as_field("converted", converted, z))
    labels = labels_like(refund_labels, z, "refund_labels")
    check_implies("refund_labels", labels, "converted", conv)
    mask = conv if matured is None else conv * check_binary(
        "matured", as_field("matured", matured, z))
    return masked_mean(bce_loss(labels, z, "refund_labels"), mask)


# ---------------------------------------------------------------------------------- direct
def direct_net_cvr_loss(net_labels, net_logits) -> tf.Tensor:
    """Per-example cross-entropy of a direct net-CVR head on 0/1 net labels (not reduced)."""
    return bce_loss(net_labels, net_logits, "net_labels")


# --------------------------------------------------------------------- importance sampling
def net_conversion_weights(net_prob, delayed_refund_prob, delayed_conversion_prob):
    """``(w+, w-)`` of the three-moment stream (module docstring, item 3), float32.

    Args:
      net_prob: ``p(y=1 | x)``, in ``(0, 1)``.
      delayed_refund_prob: ``P_dr(x)``, a refund arrives after the waiting window.
      delayed_conversion_prob: ``P_dp(x)``, the conversion arrives after the waiting window.
    """
    p = tf.cast(net_prob, tf.float32)
    dr = tf.cast(delayed_refund_prob, tf.float32)
    dp = tf.cast(delayed_conversion_prob, tf.float32)
    q_pos = tf.maximum(p + (2.0 * dr - dp) / 3.0, 2.0 * p / 3.0)
    q_neg = tf.maximum((1.0 - p) - (2.0 * dr - dp) / 3.0, (1.0 - p) / 3.0)
    return p / q_pos, (1.0 - p) / q_neg


def net_conversion_is_loss(labels, logits, delayed_refund_prob,
                           delayed_conversion_prob) -> tf.Tensor:
    """Per-example importance-sampling net-conversion loss on the three-moment stream.

    Args:
      labels: the stream's 0/1 net labels (each click's three copies).
      logits: the net-CVR logits ``z``.
      delayed_refund_prob: ``P_dr(x)`` in ``[0, 1]``, one per logit.
      delayed_conversion_prob: ``P_dp(x)`` in ``[0, 1]``, one per logit.

    Returns:
      float32 losses shaped like ``logits``, not reduced; weights from the model's own
      prediction and the auxiliary probabilities, all without gradient.
    """
    z = as_logits(logits)
    dr = probability_like("delayed_refund_prob", delayed_refund_prob, z)
    dp = probability_like("delayed_conversion_prob", delayed_conversion_prob, z)
    return weighted_bce(labels, z, *net_conversion_weights(model_probability(z), dr, dp))


def net_delay_heads_loss(delayed_conversion, delayed_refund, matured, dp_logits, dr_logits):
    """Cross-entropy of the ``P_dp`` and ``P_dr`` heads over matured clicks: a pair of scalars.

    Labels of a click whose refund window has closed (``matured``, e.g. from
    :func:`~ranking.losses.delayed_feedback.matured_mask` with the attribution plus refund
    windows): ``delayed_conversion = 1`` iff it converted after the waiting window (refunded
    or not), ``delayed_refund = 1`` iff a refund arrived after the waiting window. (In the
    stream builder's net-conversion stream these are the second copy's ``delayed_positive``
    and the third copy's ``delayed_refund``, each available once final.) Rows outside
    ``matured`` give no loss and no gradient.
    """
    z_dp = as_logits(dp_logits)
    z_dr = as_field("dr_logits", as_logits(dr_logits), z_dp)
    mask = check_binary("matured", as_field("matured", matured, z_dp))
    return (masked_mean(bce_loss(delayed_conversion, z_dp, "delayed_conversion"), mask),
            masked_mean(bce_loss(delayed_refund, z_dr, "delayed_refund"), mask))
