r"""Importance-weighted binary cross-entropy: the one loss every delayed-feedback method shares,
and the checks of the per-example inputs it is fed.

Identity. Training should minimize the risk under the true distribution ``p`` of (click,
final label), but the stream draws its samples from another distribution ``q``. Wherever
``q(x, y) > 0`` when ``p(x, y) > 0``,

    E_p[l(x, y)] = sum_{x,y} p(x, y) l(x, y) = sum_{x,y} q(x, y) (p(x, y) / q(x, y)) l(x, y)
                 = E_q[w(x, y) l(x, y)],      w = p / q,

so weighting each stream sample by ``w`` makes the stream's expected loss the true risk. With
``f = sigmoid(z)`` and binary cross-entropy, ``l(x, 1) = -log f = softplus(-z)`` and
``l(x, 0) = -log(1 - f) = softplus(z)``; each method's loss is, per stream row,

    L = c1 * softplus(-z) + c0 * softplus(z),

with ``c1 = y w+``, ``c0 = (1 - y) w-`` for plain importance weights (FNW, ES-DFM, DEFER) and
label-corrected coefficients where an observed negative may be a fake one (DEFUSE puts weight
on ``-log f`` for it too). ``c1 = y, c0 = 1 - y`` is plain cross-entropy.

Stop-gradient. The weights estimate a density ratio from the model's own prediction or from
auxiliary models; they are constants of the loss (``tf.stop_gradient``, as in the papers'
code), otherwise the model could lower its loss by moving the weights instead of fitting the
label.
"""
from __future__ import annotations

import tensorflow as tf

# Floor/ceiling for a model's own probability used inside a weight: keeps p / q finite when a
# logit saturates (sigmoid(z) is exactly 0 or 1 in float32 beyond |z| ~ 17 / 88).
PROB_EPS = 1e-7


def as_field(name: str, value, like: tf.Tensor) -> tf.Tensor:
    """``value`` as float32 with the shape of ``like`` (the logits), one value per example.

    Raises ValueError naming ``name`` when the static number of values differs: broadcasting
    a ``[batch]`` field against ``[batch, 1]`` logits would silently give ``[batch, batch]``.
    """
    value = tf.cast(value, tf.float32)
    have, want = value.shape.num_elements(), like.shape.num_elements()
    if have is not None and want is not None and have != want:
        raise ValueError(f"{name} has {have} values {value.shape}, expected {want} "
                         f"(one per logit, logits shape {like.shape})")
    return tf.reshape(value, tf.shape(like))


def _assert_all(ok: tf.Tensor, message: str, value: tf.Tensor) -> None:
    """Eagerly: ValueError quoting up to 8 bad values. In a graph (``fit``, SavedModel): an
    Assert op, which raises InvalidArgumentError with the same message when it runs."""
    bad = tf.boolean_mask(value, tf.logical_not(ok))
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(ok)):
            raise ValueError(f"{message} {bad.numpy()[:8].tolist()}")
        return
    tf.debugging.Assert(tf.reduce_all(ok), [message, bad], summarize=8)


def check_probability(name: str, value: tf.Tensor) -> tf.Tensor:
    """Asserts every value is in ``[0, 1]`` (NaN fails); the error quotes the bad values."""
    _assert_all((value >= 0.0) & (value <= 1.0), f"{name} must be in [0, 1], got", value)
    return value


def check_binary(name: str, value: tf.Tensor) -> tf.Tensor:
    """Asserts every value is 0 or 1; the error quotes the bad values."""
    _assert_all((value == 0.0) | (value == 1.0), f"{name} must be 0 or 1, got", value)
    return value


def check_implies(name: str, value: tf.Tensor, other_name: str, other: tf.Tensor) -> None:
    """Asserts ``value = 1`` only where ``other = 1`` (both 0/1); quotes the bad ``other``."""
    _assert_all(value <= other, f"{name} = 1 requires {other_name} = 1; {other_name} was",
                other)


def labels_like(labels, logits: tf.Tensor, name: str = "label") -> tf.Tensor:
    """0/1 stream labels, checked, shaped like ``logits``."""
    return check_binary(name, as_field(name, labels, logits))


def probability_like(name: str, value, logits: tf.Tensor) -> tf.Tensor:
    """An auxiliary probability, checked, shaped like ``logits``."""
    return check_probability(name, as_field(name, value, logits))


def model_probability(logits: tf.Tensor) -> tf.Tensor:
    """``sigmoid(z)`` of the model's own logits in ``[eps, 1 - eps]``, for a weight (which
    :func:`importance_weighted_bce` keeps out of the gradient)."""
    return tf.clip_by_value(tf.sigmoid(logits), PROB_EPS, 1.0 - PROB_EPS)


def as_logits(logits) -> tf.Tensor:
    return tf.cast(logits, tf.float32)


def importance_weighted_bce(logits, pos_coef, neg_coef) -> tf.Tensor:
    r"""Per-example ``c1 * (-log f) + c0 * (-log(1 - f))``, ``f = sigmoid(logits)``.

    ``-log f = softplus(-z)`` and ``-log(1 - f) = softplus(z)`` are finite for every finite
    logit. The coefficients get no gradient: this is the one place where weights computed
    from the model's own or auxiliary predictions meet the loss.

    Args:
      logits: logits ``z``, any shape, any float dtype.
      pos_coef: ``c1``, weight on ``-log f``, shaped like ``logits`` (or broadcastable).
      neg_coef: ``c0``, weight on ``-log(1 - f)``.

    Returns:
      float32 losses shaped like ``logits``, not reduced.
    """
    z = as_logits(logits)
    return (tf.stop_gradient(tf.cast(pos_coef, tf.float32)) * tf.nn.softplus(-z)
            + tf.stop_gradient(tf.cast(neg_coef, tf.float32)) * tf.nn.softplus(z))


def weighted_bce(labels, logits, pos_weight, neg_weight) -> tf.Tensor:
    """``y w+ (-log f) + (1 - y) w- (-log(1 - f))`` per example (weights without gradient)."""
    z = as_logits(logits)
    y = labels_like(labels, z)
    return importance_weighted_bce(z, y * pos_weight, (1.0 - y) * neg_weight)


def bce_loss(labels, logits, name: str = "label") -> tf.Tensor:
    r"""Plain per-example binary cross-entropy from logits on 0/1 labels (float32, not reduced).

    The loss of the *Vanilla* baseline (the labels observed at the waiting window, fake
    negatives left as they are: biased towards 0), of *Oracle* (the final labels, which use the
    future: an upper bound for evaluation only, never deployable), of *FNC* (the fake-negative
    stream's labels, calibrated at inference) and of a direct net-CVR head. Equal to
    ``tf.nn.sigmoid_cross_entropy_with_logits`` on 0/1 labels. ``name`` names the labels in
    errors.
    """
    z = as_logits(logits)
    y = labels_like(labels, z, name)
    return importance_weighted_bce(z, y, 1.0 - y)
