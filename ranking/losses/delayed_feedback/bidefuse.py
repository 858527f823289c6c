r"""Bi-DEFUSE: the two-head variant in Chen et al., "Asymptotically Unbiased Estimation for
Delayed Feedback Modeling via Label Correction", WWW 2022.

Idea. Split the conversion probability at the waiting window ``w``:

    p1(x) = p_in(x) + p_out(x),   p_in = p(y=1, d <= w | x),   p_out = p(y=1, d > w | x),

and fit each part with its own head, ``f = f_in + f_out`` (:func:`bidefuse_probability`;
clipped to 1 here, the reference code adds them unclipped). The stream is ES-DFM's: first
copies at ``click + w`` with the in-window label, delayed-positive duplicates at conversion.

In-window head. Its target ``y_in = [d <= w]`` is exactly the first copy's label, and is final
when the copy is trained on; there is one first copy per click (``q(x) = p(x)``). Plain
cross-entropy over the first copies (``is_duplicate = 0``) is unbiased: no weights.

Out-window head. Its target ``y_out = [d > w]`` is unknown at ``click + w``: every first copy
is an observed out-window negative, and a click converting late comes back as an out-window
positive (the delayed-positive duplicate). That is the fake-negative stream for ``y_out``, so
DEFUSE's label correction (:mod:`~ranking.losses.delayed_feedback.defuse`) applies with
sample types DP (the duplicate), FN (the first copy of a late converter, mass ``p_out``) and
RN (every other first copy, in-window positives included since their ``y_out`` is 0). Every
click has a first copy, so ``z = P(FN | first copy, x) = p_out``; with ``1 + p_out`` samples
per click and ``q(x) = p(x)``:

    DP:          1 * l1
    first copy:  z p_out l1 + (1 - z)(1 + p_out) l0,    z = p_out,

and ``p_out`` is the head's own stop-gradient prediction ``f_out`` (no auxiliary model).
Check, per ``x``: ``[p_out l1 + p_out^2 l1 + (1 - p_out)(1 + p_out) l0] / (1 + p_out) =
p_out l1 + (1 - p_out) l0``, the true out-window risk.

Per stream row the loss is ``(1 - is_duplicate) BCE(label, z_in)`` plus the out-window term.
(The reference code averages the in-window term over the first copies only; a plain mean of
these per-row sums scales that head's term by the batch share of first copies,
``1 / (1 + E[p_out])``, and leaves the out-window head untouched.)
"""
from __future__ import annotations

import tensorflow as tf

from ranking.losses.delayed_feedback.importance import (as_field, as_logits, check_binary,
                                                        check_implies,
                                                        importance_weighted_bce, labels_like,
                                                        model_probability)


def bidefuse_out_window_weights(delayed_positive, out_prob):
    """Per-row coefficients ``(c1, c0)`` of the out-window head (module docstring).

    ``(1, 0)`` on a delayed-positive duplicate; ``(f_out^2, (1 - f_out)(1 + f_out))`` on a
    first copy, ``f_out`` the head's own probability.
    """
    dpos, f = tf.cast(delayed_positive, tf.float32), tf.cast(out_prob, tf.float32)
    return dpos + (1.0 - dpos) * f * f, (1.0 - dpos) * (1.0 - f) * (1.0 + f)


def bidefuse_loss(labels, in_window_logits, out_window_logits, is_duplicate,
                  delayed_positive) -> tf.Tensor:
    """Per-example Bi-DEFUSE loss: in-window cross-entropy on first copies plus the
    label-corrected out-window loss on every row (module docstring).

    Args:
      labels: the stream's 0/1 labels (a first copy's is its in-window label).
      in_window_logits: logits of ``f_in``.
      out_window_logits: logits of ``f_out``, same shape.
      is_duplicate, delayed_positive: 0/1 stream fields; on this stream every duplicate is a
        delayed positive, so they must be equal.

    Returns:
      float32 losses shaped like the logits, not reduced.
    """
    z_in, z_out = as_logits(in_window_logits), as_logits(out_window_logits)
    y = labels_like(labels, z_in)
    dup = check_binary("is_duplicate", as_field("is_duplicate", is_duplicate, z_in))
    dpos = check_binary("delayed_positive", as_field("delayed_positive", delayed_positive, z_in))
    # On the ES-DFM stream the two flags coincide; anything else is another method's stream.
    check_implies("is_duplicate", dup, "delayed_positive", dpos)
    check_implies("delayed_positive", dpos, "is_duplicate", dup)
    check_implies("delayed_positive", dpos, "label", y)
    z_out = as_field("out_window_logits", z_out, z_in)
    in_loss = importance_weighted_bce(z_in, (1.0 - dup) * y, (1.0 - dup) * (1.0 - y))
    out_coefs = bidefuse_out_window_weights(dpos, model_probability(z_out))
    return in_loss + importance_weighted_bce(z_out, *out_coefs)


def bidefuse_probability(in_window_logits, out_window_logits) -> tf.Tensor:
    """The Bi-DEFUSE conversion probability ``min(f_in + f_out, 1)`` (float32)."""
    p = tf.sigmoid(as_logits(in_window_logits)) + tf.sigmoid(as_logits(out_window_logits))
    return tf.minimum(p, 1.0)
