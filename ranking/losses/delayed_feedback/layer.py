r"""One entry point for every delayed-feedback method: :func:`delayed_feedback_loss` and the
Keras layer :class:`DelayedFeedbackLoss`, which pick the method's loss by name and read its
inputs from a dict keyed by the stream field names (:mod:`ranking.losses.stream_fields`) and
the head names below.

==========  ===================================================  ============================
method      inputs                                               loss
==========  ===================================================  ============================
vanilla     logits, label                                        cross-entropy (window labels)
oracle      logits, label                                        cross-entropy (final labels)
fnc         logits, label                                        cross-entropy; calibrate
                                                                 with ``fnc_calibrate``
fnw         logits, label                                        :func:`fnw_loss`
es_dfm      logits, label, dp_logits, rn_logits                  :func:`esdfm_loss`
defer       logits, label, dp_logits                             :func:`defer_loss`
defuse      logits, label, delayed_positive, dp_logits,          :func:`defuse_loss`
            rn_logits
bi_defuse   in_window_logits, out_window_logits, label,          :func:`bidefuse_loss`
            is_duplicate, delayed_positive
==========  ===================================================  ============================

The method names are the stream builder's (:mod:`pipelines.streams.methods`). ``dp_logits``
and ``rn_logits`` are the auxiliary heads' logits (:mod:`.auxiliary`); they enter through a
sigmoid and get no gradient from this loss (train them with
:func:`~ranking.losses.delayed_feedback.auxiliary.delay_heads_loss`).
"""
from __future__ import annotations

import collections.abc

import tensorflow as tf

from ranking.losses.delayed_feedback.bidefuse import bidefuse_loss
from ranking.losses.delayed_feedback.defer import defer_loss
from ranking.losses.delayed_feedback.defuse import defuse_loss
from ranking.losses.delayed_feedback.esdfm import esdfm_loss
from ranking.losses.delayed_feedback.fake_negative import fnc_loss, fnw_loss
from ranking.losses.delayed_feedback.importance import bce_loss
from ranking.losses.focal import _PACKAGE
from ranking.losses.stream_fields import DELAYED_POSITIVE, IS_DUPLICATE, LABEL

LOGITS = "logits"
DP_LOGITS = "dp_logits"
RN_LOGITS = "rn_logits"
IN_WINDOW_LOGITS = "in_window_logits"
OUT_WINDOW_LOGITS = "out_window_logits"


def _prob(logits):
    return tf.sigmoid(tf.cast(logits, tf.float32))


# method -> (required inputs, loss of the inputs dict)
_METHODS = {
    "vanilla": ((LOGITS, LABEL), lambda i: bce_loss(i[LABEL], i[LOGITS])),
    "oracle": ((LOGITS, LABEL), lambda i: bce_loss(i[LABEL], i[LOGITS])),
    "fnc": ((LOGITS, LABEL), lambda i: fnc_loss(i[LABEL], i[LOGITS])),
    "fnw": ((LOGITS, LABEL), lambda i: fnw_loss(i[LABEL], i[LOGITS])),
    "es_dfm": ((LOGITS, LABEL, DP_LOGITS, RN_LOGITS),
               lambda i: esdfm_loss(i[LABEL], i[LOGITS], _prob(i[DP_LOGITS]),
                                    _prob(i[RN_LOGITS]))),
    "defer": ((LOGITS, LABEL, DP_LOGITS),
              lambda i: defer_loss(i[LABEL], i[LOGITS], _prob(i[DP_LOGITS]))),
    "defuse": ((LOGITS, LABEL, DELAYED_POSITIVE, DP_LOGITS, RN_LOGITS),
               lambda i: defuse_loss(i[LABEL], i[LOGITS], i[DELAYED_POSITIVE],
                                     _prob(i[DP_LOGITS]), _prob(i[RN_LOGITS]))),
    "bi_defuse": ((IN_WINDOW_LOGITS, OUT_WINDOW_LOGITS, LABEL, IS_DUPLICATE, DELAYED_POSITIVE),
                  lambda i: bidefuse_loss(i[LABEL], i[IN_WINDOW_LOGITS], i[OUT_WINDOW_LOGITS],
                                          i[IS_DUPLICATE], i[DELAYED_POSITIVE])),
}
METHODS = tuple(_METHODS)


def check_method(value) -> str:
    if value not in _METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {value!r}")
    return value


def required_inputs(method: str) -> tuple:
    """The input names ``method`` reads."""
    return _METHODS[check_method(method)][0]


def delayed_feedback_loss(method: str, inputs) -> tf.Tensor:
    """Per-example loss of ``method`` (table in the module docstring), float32, not reduced.

    Args:
      method: one of :data:`METHODS`.
      inputs: a mapping with at least :func:`required_inputs` ``(method)``; extra keys are
        ignored, so one dict of every stream field and head output serves every method.

    Raises:
      ValueError naming the method and the missing inputs.
    """
    names, loss = _METHODS[check_method(method)]
    if not isinstance(inputs, collections.abc.Mapping):
        raise ValueError(f"method {method!r} needs a dict of inputs {names}, got {inputs!r}")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"method {method!r} needs inputs {missing} (has {sorted(inputs)})")
    return loss(inputs)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class DelayedFeedbackLoss(tf.keras.layers.Layer):
    r"""Per-example delayed-feedback loss of one method, as a Keras layer.

    Idea: the stream a method trains on has fake negatives (clicks whose conversion has not
    arrived) and re-ingested duplicates; each method reweights or label-corrects the
    cross-entropy so its expectation over the stream is the true risk (derivations in each
    method's module: FNW/FNC Ktena et al. RecSys 2019, ES-DFM Yang et al. AAAI 2021, DEFER
    Gu et al. KDD 2021, DEFUSE/Bi-DEFUSE Chen et al. WWW 2022). The layer lets a model pick
    the method from its config and call it on one dict of its outputs and stream fields;
    reduce the result (mean, or ``ranking.losses.masked_mean``) and ``add_loss`` it.

    Args:
      method: one of :data:`METHODS`.
      **kwargs: Keras ``Layer`` arguments; computes in float32 (dtype defaults to it).

    Input: a dict with the method's :func:`required_inputs` (e.g. ``logits [batch, 1]``,
    ``label [batch, 1]``), each one value per example. Output: float32 per-example losses
    shaped like the (in-window) logits.
    """

    def __init__(self, method: str, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.method = check_method(method)

    def call(self, inputs):
        return delayed_feedback_loss(self.method, inputs)

    def get_config(self):
        return {**super().get_config(), "method": self.method}
