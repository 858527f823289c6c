r"""Entire Space Multi-task Model head (ESMM) and its log-space CTCVR loss.

Ma et al., "Entire Space Multi-Task Model: An Effective Approach for Estimating Post-Click
Conversion Rate", SIGIR 2018.
"""
from __future__ import annotations

import collections.abc
import math

import tensorflow as tf

from ranking.layers.mlp import _PACKAGE


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class ESMMHead(tf.keras.layers.Layer):
    r"""ESMM head: CTR, CVR and CTCVR probabilities from a CTR logit and a CVR logit.

    Idea. With ``y`` = click and ``z`` = conversion of an impression ``x``, a conversion needs a
    click, so by the chain rule

        p(y=1, z=1 | x) = p(y=1 | x) * p(z=1 | y=1, x)
        pCTCVR          = pCTR       * pCVR.

    A CVR model trained on clicked impressions only is fitted on a biased sample (sample
    selection bias) and sees few positives. ESMM instead defines pCVR only through the
    product: the losses are put on CTR (label ``y``) and CTCVR (label ``y AND z``), both over
    *all* impressions, and the CVR logit is trained only through the CTCVR term -- never on a
    CVR label of its own. At serving time pCVR is the CVR tower's output, valid on the whole
    impression space. Train with ``BCE(y, ctr_logit)`` + :func:`ctcvr_log_loss`.

    Args:
      **kwargs: Keras ``Layer`` arguments. The head computes in float32 whatever the global
        policy (its dtype defaults to ``"float32"``): probabilities and their product need it.

    Input: ``[ctr_logit, cvr_logit]``, two tensors ``[batch, 1]`` (any float dtype).
    Output: dict ``{"ctr": p_ctr, "cvr": p_cvr, "ctcvr": p_ctr * p_cvr}``, each float32
    ``[batch, 1]``.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, inputs):
        if not isinstance(inputs, collections.abc.Sequence) or len(inputs) != 2:
            raise ValueError(f"ESMMHead expects [ctr_logit, cvr_logit], got {inputs!r}")
        ctr_logit, cvr_logit = (tf.cast(x, tf.float32) for x in inputs)
        p_ctr = tf.sigmoid(ctr_logit)
        p_cvr = tf.sigmoid(cvr_logit)
        return {"ctr": p_ctr, "cvr": p_cvr, "ctcvr": p_ctr * p_cvr}

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape[0])
        return {"ctr": shape, "cvr": shape, "ctcvr": shape}


_LOG_HALF = -math.log(2.0)


def ctcvr_log_loss(labels, ctr_logit, cvr_logit) -> tf.Tensor:
    r"""Binary cross-entropy of ``p = sigmoid(a) * sigmoid(b)`` against CTCVR labels, in log space.

    With ``a`` = CTR logit, ``b`` = CVR logit and label ``l`` (click and conversion):

        loss = -[l log p + (1 - l) log(1 - p)].

    Computing ``p`` and then ``log p`` / ``log(1 - p)`` fails twice: ``p`` underflows to 0 for
    very negative logits (``log 0 = -inf``), and for ``p`` near 1 the difference ``1 - p`` loses
    all its digits. Instead:

    * ``log sigmoid(a) = -log(1 + e^{-a}) = -softplus(-a)``, so
      ``log p = -softplus(-a) - softplus(-b)``, exact and finite for all finite logits.
    * ``log(1 - p) = log(1 - e^{log p}) = log(-expm1(log p))``. ``expm1`` keeps the digits of
      ``1 - p`` when ``log p`` is near 0 (p near 1); when ``log p <= -log 2`` (p <= 1/2) the
      equivalent ``log1p(-exp(log p))`` is the accurate form (Maechler, "Accurately Computing
      log(1 - exp(-|a|))", 2012).
    * ``log(-expm1(log p))`` still needs ``log p`` != 0, i.e. breaks when both logits are so
      large that ``softplus(-a)`` underflows (a, b > ~88 in float32). For p > 1/2 we therefore
      evaluate the same quantity through an exact identity: with
      ``1/p = (1 + e^{-a})(1 + e^{-b}) = 1 + e^{-a} + e^{-b} + e^{-a-b}``,

          1 - p = p (1/p - 1) = p (e^{-a} + e^{-b} + e^{-a-b})
          log(1 - p) = log p + logsumexp(-a, -b, -a-b),

      where p > 1/2 implies a, b > 0, so every exponent is <= 0 and nothing cancels
      catastrophically. It equals ``log(-expm1(log p))`` wherever the latter is finite and
      stays finite (about ``-min(a, b)``) beyond.

    The unused branch of each ``tf.where`` gets a safe input so no inf/NaN reaches the gradient.

    Args:
      labels: CTCVR labels in ``[0, 1]`` (clicked and converted), shape broadcastable to the
        logits.
      ctr_logit: CTR logit ``a`` (e.g. ``[batch, 1]``).
      cvr_logit: CVR logit ``b``, same shape.

    Returns:
      Per-example float32 losses with the broadcast shape of the inputs (reduce them yourself,
      e.g. ``tf.reduce_mean``, so sample weights can be applied).
    """
    labels = tf.cast(labels, tf.float32)
    log_p, log_1mp = _log_p_and_log_1mp(ctr_logit, cvr_logit)
    return -(labels * log_p + (1.0 - labels) * log_1mp)


def ctcvr_logit(ctr_logit, cvr_logit) -> tf.Tensor:
    r"""The logit of ``p = sigmoid(a) * sigmoid(b)``: ``log p - log(1 - p)``, in log space.

    ``sigmoid(ctcvr_logit(a, b)) == sigmoid(a) * sigmoid(b)``, and binary cross-entropy from
    logits on it, ``softplus(-z)`` for a positive and ``softplus(z)`` for a negative, equals
    :func:`ctcvr_log_loss` (``-log p`` and ``-log(1 - p)``), so an ESMM CTCVR task can use a
    standard from-logits loss and AUC metric without ever forming ``log 0``.
    """
    log_p, log_1mp = _log_p_and_log_1mp(ctr_logit, cvr_logit)
    return log_p - log_1mp


def _log_p_and_log_1mp(ctr_logit, cvr_logit):
    """``(log p, log(1 - p))`` of ``p = sigmoid(a) sigmoid(b)``; see :func:`ctcvr_log_loss`."""
    a = tf.cast(ctr_logit, tf.float32)
    b = tf.cast(cvr_logit, tf.float32)
    log_p = -tf.nn.softplus(-a) - tf.nn.softplus(-b)
    high = log_p > _LOG_HALF  # p > 1/2: both logits positive
    # Branch p <= 1/2: log1p(-exp(log p)); give it log p = -1 where unused (finite gradient).
    log_p_low = tf.where(high, tf.fill(tf.shape(log_p), -1.0), log_p)
    log_1mp_low = tf.math.log1p(-tf.exp(log_p_low))
    # Branch p > 1/2: log p + logsumexp(-a, -b, -a-b); feed a = b = 1 where unused.
    one = tf.ones_like(log_p)
    a_hi, b_hi = tf.where(high, a, one), tf.where(high, b, one)
    log_p_hi = -tf.nn.softplus(-a_hi) - tf.nn.softplus(-b_hi)
    log_1mp_high = log_p_hi + tf.reduce_logsumexp(tf.stack([-a_hi, -b_hi, -a_hi - b_hi]), 0)
    log_1mp = tf.where(high, log_1mp_high, log_1mp_low)
    return log_p, log_1mp
