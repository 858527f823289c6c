r"""Auxiliary heads of the delayed-feedback losses, and which label each sample gives them.

Heads (``w`` the waiting window, ``d`` the conversion delay, ``p1 = p(y=1 | x)``):

* ``f_dp(x) ~ p_dp(x) = p(y=1, d > w | x)``, the delayed-positive (fake-negative) probability:
  ES-DFM, DEFER, DEFUSE;
* ``f_rn(x) ~ p_rn(x) = p(y=0 | x) / (p(y=0 | x) + p_dp(x))``, the probability that a click
  observed negative at the window is a real negative: ES-DFM, DEFUSE.

FNW and DEFER use the model's own prediction for ``p1``; Bi-DEFUSE's out-window head weighs
itself; FNC, Vanilla and Oracle need nothing.

Labels (:func:`delay_head_targets`) come from *matured* clicks, whose final label is known:

* ``f_dp``: every matured click; label 1 iff it converted after the window,
  ``label * (1 - in_window)``.
* ``f_rn``: matured clicks observed negative at the window (``in_window = 0``: it is the
  conditional probability given that observation); label 1 iff it never converted,
  ``1 - label``.

Never train on the future. A click's final label is known only when its attribution window
``W`` has closed: a late conversion can be seen earlier, but "no conversion" only at
``click + W``, and labelling unmatured clicks would turn every fake negative into a real one
for the auxiliary heads. :func:`matured_mask` keeps the rows with ``click + W <= as_of``, the
click time being ``available_at - elapsed``; :func:`delay_heads_loss` takes it as a mask.

Online alternative on DEFER's stream (:func:`defer_dp_targets`): every click is duplicated
exactly once, and the duplicate arrives when its final label is known (a positive at its
conversion, a real negative at ``click + W``), so the duplicates can train ``f_dp`` with
``delayed_positive`` as the label. (At the head of the stream the negatives' duplicates lag
the positives' by up to ``W``; over the stream each click counts once.)
"""
from __future__ import annotations

import numbers

import tensorflow as tf

from ranking.losses.delayed_feedback.importance import (as_field, as_logits, bce_loss,
                                                        check_binary, check_implies)
from ranking.losses.task_weighting import masked_mean


def _check_horizon(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"horizon_s must be a number of seconds > 0, got {value!r}")
    return float(value)


def click_time(available_at, elapsed) -> tf.Tensor:
    """``available_at - elapsed`` in float64 (exact for epoch seconds; float32 is not)."""
    return tf.cast(available_at, tf.float64) - tf.cast(elapsed, tf.float64)


def matured_mask(available_at, elapsed, horizon_s: float, as_of) -> tf.Tensor:
    """1.0 where the click's outcome window has closed by ``as_of`` (``click + horizon_s <=
    as_of``), else 0.0 (float32, shaped like ``available_at``).

    Args:
      available_at, elapsed: the stream fields (epoch seconds, seconds).
      horizon_s: the window after which the label is final (the attribution window ``W``;
        the refund window for refund labels), > 0.
      as_of: the training time, epoch seconds (scalar).
    """
    horizon = _check_horizon(horizon_s)
    done = click_time(available_at, elapsed) + horizon <= tf.cast(as_of, tf.float64)
    return tf.cast(done, tf.float32)


def delay_head_targets(labels, in_window):
    """``(dp_label, rn_label, rn_mask)`` of a matured click (module docstring), float32.

    Args:
      labels: the final 0/1 conversion labels.
      in_window: 1 where the conversion fell inside the waiting window (requires label 1).
    """
    y = check_binary("label", tf.cast(labels, tf.float32))
    inw = check_binary("in_window", as_field("in_window", in_window, y))
    check_implies("in_window", inw, "label", y)
    return y * (1.0 - inw), 1.0 - y, 1.0 - inw


def delay_heads_loss(labels, in_window, matured, dp_logits, rn_logits=None):
    """Cross-entropy of the auxiliary heads on matured clicks: ``(dp_loss, rn_loss)``.

    ``dp_loss`` is the mean over ``matured`` rows, ``rn_loss`` over matured rows observed
    negative at the window (0.0 when ``rn_logits`` is None or no row counts). Rows outside the
    mask give neither loss nor gradient, whatever their labels.

    Args:
      labels, in_window: as for :func:`delay_head_targets`.
      matured: the 0/1 :func:`matured_mask` (or any 0/1 mask of rows whose label is final).
      dp_logits: logits of ``f_dp``.
      rn_logits: logits of ``f_rn``, or None (DEFER has no ``f_rn``).
    """
    z_dp = as_logits(dp_logits)
    dp_label, rn_label, rn_mask = delay_head_targets(as_field("label", labels, z_dp),
                                                     in_window)
    mask = check_binary("matured", as_field("matured", matured, z_dp))
    dp_loss = masked_mean(bce_loss(dp_label, z_dp), mask)
    if rn_logits is None:
        return dp_loss, tf.constant(0.0)
    z_rn = as_field("rn_logits", as_logits(rn_logits), z_dp)
    return dp_loss, masked_mean(bce_loss(rn_label, z_rn), mask * rn_mask)


def defer_dp_targets(is_duplicate, delayed_positive):
    """``(dp_label, mask)`` for training ``f_dp`` online on DEFER's duplicates, float32.

    ``mask = is_duplicate``: first copies give no label (their future is unknown).
    """
    dup = check_binary("is_duplicate", tf.cast(is_duplicate, tf.float32))
    dpos = check_binary("delayed_positive", as_field("delayed_positive", delayed_positive, dup))
    check_implies("delayed_positive", dpos, "is_duplicate", dup)
    return dpos, dup
