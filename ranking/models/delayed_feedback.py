r"""Click-level CVR models trained through a delayed-feedback stream, and their net-conversion
variants (issue 6).

Idea. Conversions arrive hours to days after the click, so a model trained in near real time
sees fake negatives; each method of :mod:`ranking.losses.delayed_feedback` trains on its own
stream (:mod:`pipelines.streams`) with a loss whose expectation over that stream is the true
risk, and some need auxiliary models. This model holds the heads each method needs and
wires each head to its loss and its rows:

    features --FeatureEmbedding--> x [B, d] --MLP(hidden_units)--> h [B, h]
      h --Dense(1)--> main logits              (Bi-DEFUSE: in-window and out-window logits)
      h --Dense(1)--> net logits               (net = "direct" | "importance_sampling")
      stop_gradient(x) --MLP(aux_units)--Dense(1)--> dp, rn, refund, dr logits

============  =================================================  =========================
method        heads (besides the main logit)                     paper
============  =================================================  =========================
vanilla       --                                                 (production baseline)
oracle        --                                                 (true labels; upper bound)
fnw, fnc      --; FNC calibrates at inference, ``p = exp(z)``    Ktena et al., RecSys 2019
es_dfm        dp (delayed positive), rn (real negative)          Yang et al., AAAI 2021
defer         dp                                                 Gu et al., KDD 2021
defuse        dp, rn                                             Chen et al., WWW 2022
bi_defuse     in-window and out-window heads, ``p = f_in+f_out``  Chen et al., WWW 2022
============  =================================================  =========================

The auxiliary heads (dp, rn; refund, dr below) are separate models in the papers: here they
read the shared embedding under ``stop_gradient``, so they never shape the CVR
representation (their labels come from other rows, and a re-weighted refund head must not
move the CVR features), while costing no second embedding.

Rows each head trains on (``kind`` of a batch, fed by :mod:`ranking.streaming`):

* ``pretrain`` -- the clicks of the pre-training days with the labels observed at its end
  (``label``: converted by then; ``in_window``; ``net_label``): cross-entropy of the main
  head (FNC: each click as a negative plus a positive copy when converted, its stream
  collapsed, ``c1 = y, c0 = 1``; Bi-DEFUSE: ``f_in`` on ``in_window``, ``f_out`` on ``label *
  (1 - in_window)``) and of the net head on ``net_label``.
* ``stream`` -- the method's stream rows: :class:`~ranking.losses.delayed_feedback.
  DelayedFeedbackLoss` of the method on the stream fields (``label``, ``delayed_positive``,
  ``is_duplicate``) and the head outputs.
* ``matured_clicks`` -- clicks whose attribution window has closed (final ``label``,
  ``in_window``): :func:`~ranking.losses.delayed_feedback.delay_heads_loss` for dp and rn.
  DEFER's paper-style online labels (its own duplicates) would work too in a long stream,
  but at the head of a short one its real negatives lag its positives by the whole window
  and inflate ``f_dp`` (:mod:`ranking.losses.delayed_feedback.auxiliary`); matured clicks
  give every method the same unbiased labels.
* ``matured_conversions`` -- conversions whose refund window has closed (``refund_label``,
  ``delayed_refund``): the refund and dr heads.
* ``net_stream`` -- the three-moment net-conversion stream (``label``, seed 004): the net head.

Net conversion (``net``; :mod:`ranking.losses.net_conversion`):

* ``cascade``: ``pNet = pCVR * (1 - pRefund|conv)``, the refund head trained on matured
  conversions only (trained on every click it would learn ``P(refund | x)`` and the product
  would count ``pCVR`` twice).
* ``direct``: a net head with plain cross-entropy on the net stream's labels.
* ``importance_sampling``: the same net head with seed 004's loss, ``w+ = p / (p + 2/3 P_dr
  - 1/3 P_dp)``, ``w- = (1 - p) / (1 - p - 2/3 P_dr + 1/3 P_dp)``. ``P_dp`` is the dp head
  (a conversion after the window; added when the CVR method has none) and ``P_dr(x) =
  P(converts | x) P(refund after the window | converted, x) = pCVR * f_dr``, with ``f_dr``
  trained on matured conversions: a click-level "delayed refund" label is final only at
  ``click + 2W``, too late to train on, whereas a conversion's is final at ``pay + W``.

The seed's sparse-refund failure and its remedy. Seed 004 reports refund PCOC 5.88 and
net-CVR PCOC 0.72 with CVR PCOC 1.37; since ``pNet = pCVR (1 - pRefund)``, ``0.72 = 1.37 (1 -
r_hat) / (1 - r)`` with a refund rate ``r`` of 0.09-0.14 gives a mean refund prediction
``r_hat`` of about 0.5: a head that learnt balanced classes, which is what "amplifying the few
positives" of a sparse label does (positives up-weighted, or negatives down-sampled, to
balance them). ``refund_positive_weight = k`` reproduces it: cross-entropy with weight ``k``
on refunded rows is, per ``x`` with refund rate ``r``, ``k r (-log f) + (1 - r)(-log(1 -
f))``, whose derivative in the logit, ``-k r (1 - f) + (1 - r) f``, vanishes at ``f / (1 -
f) = k r / (1 - r)``: the odds come out ``k`` times too high. The remedy,
``refund_prior_correction``, subtracts ``log k`` from the refund logit at inference, which
restores ``f / (1 - f) = r / (1 - r)`` exactly and keeps the ranking (King & Zeng 2001's
prior correction; He et al. 2014 re-calibrate the same way after negative down-sampling).

Output-bias priors. A head's final bias starts at 0, a prediction of 1/2, and Adam moves a
weight by about the learning rate per step; a head with few rows (the refund head: refunds
are a few percent of the conversions, and only conversions whose refund window has closed
count) may get too few steps to leave that start. :meth:`prior_rates` gives each head's
label rate in the rows known before training (for a re-weighted refund head, the rate its
loss is minimized by, ``k r / (k r + 1 - r)``) and :meth:`set_output_biases` starts each
head there (the prior initialization of Lin et al., ICCV 2017, for rare classes; the final
kernel starts at 0): the steps then only have to learn how the rate varies with ``x``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from ranking.features.embedding import DENSE, FeatureEmbedding
from ranking.layers.mlp import MLP, _check_units
from ranking.losses import stream_fields as sf
from ranking.losses.delayed_feedback import (METHODS, DelayedFeedbackLoss, bce_loss,
                                             bidefuse_probability, delay_heads_loss,
                                             fnc_calibrate, importance_weighted_bce,
                                             required_inputs)
from ranking.losses.delayed_feedback.layer import (DP_LOGITS, IN_WINDOW_LOGITS, LOGITS,
                                                   OUT_WINDOW_LOGITS, RN_LOGITS)
from ranking.losses.delayed_feedback.importance import labels_like
from ranking.losses.net_conversion import direct_net_cvr_loss, net_conversion_is_loss

__all__ = ["DelayedFeedbackModel", "METHODS", "NET_MODES", "BATCH_KINDS", "PRETRAIN", "STREAM",
           "MATURED_CLICKS", "MATURED_CONVERSIONS", "NET_STREAM", "NET_LABEL", "REFUND_LABEL",
           "CVR", "REFUND", "NET"]

NET_MODES = ("cascade", "direct", "importance_sampling")

# Batch kinds (module docstring) and the label fields of the non-stream batches.
PRETRAIN, STREAM, MATURED_CLICKS = "pretrain", "stream", "matured_clicks"
MATURED_CONVERSIONS, NET_STREAM = "matured_conversions", "net_stream"
BATCH_KINDS = (PRETRAIN, STREAM, MATURED_CLICKS, MATURED_CONVERSIONS, NET_STREAM)
NET_LABEL, REFUND_LABEL = "net_label", "refund_label"

# Output names.
CVR, REFUND, NET = "cvr", "refund", "net"
REFUND_LOGITS, DR_LOGITS, NET_LOGITS = "refund_logits", "dr_logits", "net_logits"

_DP_METHODS = ("es_dfm", "defer", "defuse")
_RN_METHODS = ("es_dfm", "defuse")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def _check_weight(value) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 1.0):
        raise ValueError(f"refund_positive_weight must be a finite number >= 1, got {value!r}")
    return float(value)


def _weighted_rate(rate: Optional[float], k: float) -> Optional[float]:
    """The constant prediction minimizing cross-entropy with weight ``k`` on positives."""
    return None if rate is None else k * rate / (k * rate + 1.0 - rate)


def _flat(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [-1])


def _mean(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.cast(x, tf.float32))


@tf.keras.utils.register_keras_serializable(package="ranking")
class DelayedFeedbackModel(tf.keras.Model):
    """CVR heads (and net-conversion heads) for delayed-feedback training through a stream.

    The heads, their losses and the rows each trains on are in the module docstring; the
    papers: ES-DFM (Yang et al., AAAI 2021), DEFER (Gu et al., KDD 2021), DEFUSE and
    Bi-DEFUSE (Chen et al., WWW 2022), FNW/FNC (Ktena et al., RecSys 2019); net conversion:
    seed 004 and TESLA's cascade.

    Args:
      features: ``ranking.config.FeaturesConfig`` (or its mapping).
      schema: the samples' ``ranking.data.schema.Schema`` (or its JSON mapping).
      method: the CVR method, one of :data:`METHODS`.
      net: ``None`` or one of :data:`NET_MODES`.
      domain: optional ``ranking.config.DomainConfig`` for the feature layer.
      hidden_units: widths of the shared MLP, e.g. ``(64, 32)``.
      aux_units: widths of each auxiliary head's MLP, e.g. ``(32,)``.
      refund_positive_weight: ``k >= 1``, the weight of refunded rows in the refund head's
        loss (``net="cascade"`` only; module docstring).
      refund_prior_correction: subtract ``log k`` from the refund logit at inference.

    Call: ``model(features)`` with the sample features (``[batch]`` scalars, ``[batch, L]``
    sequences) -> dict of ``[batch]`` float32 tensors: the logits of every head
    (``logits`` or ``in_window_logits``/``out_window_logits``, and ``dp_logits``, ``rn_logits``,
    ``refund_logits``, ``dr_logits``, ``net_logits`` where present) and the probabilities
    ``cvr`` (calibrated: FNC ``exp(z)``, Bi-DEFUSE ``min(f_in + f_out, 1)``), ``refund``
    (prior-corrected when asked) and ``net``.
    """

    def __init__(self, features, schema, method: str, net: Optional[str] = None, domain=None,
                 hidden_units=(64, 32), aux_units=(32,), refund_positive_weight: float = 1.0,
                 refund_prior_correction: bool = False, **kwargs):
        super().__init__(**kwargs)
        _check_choice("method", method, METHODS)
        _check_choice("net", net, (None,) + NET_MODES)
        self.method, self.net = method, net
        self.hidden_units = _check_units("hidden_units", hidden_units)
        self.aux_units = _check_units("aux_units", aux_units)
        self.refund_positive_weight = _check_weight(refund_positive_weight)
        if not isinstance(refund_prior_correction, bool):
            raise ValueError("refund_prior_correction must be a bool, got "
                             f"{refund_prior_correction!r}")
        self.refund_prior_correction = refund_prior_correction
        if net != "cascade" and (self.refund_positive_weight != 1.0 or refund_prior_correction):
            raise ValueError("refund_positive_weight and refund_prior_correction need "
                             f"net='cascade' (the refund head), got net={net!r}")
        self.embedding = FeatureEmbedding(features, schema, domain, name="features")
        if self.embedding.features_config.biases:
            raise ValueError("features.biases is not supported by DelayedFeedbackModel (its "
                             "heads have no per-id logit terms), got "
                             f"{[f.name for f in self.embedding.features_config.biases]}")
        self.body = MLP(self.hidden_units, name="body")
        main = ((IN_WINDOW_LOGITS, OUT_WINDOW_LOGITS) if method == "bi_defuse" else (LOGITS,))
        self.main_heads = {n: tf.keras.layers.Dense(1, name=n) for n in main}
        if net in ("direct", "importance_sampling"):
            self.main_heads[NET_LOGITS] = tf.keras.layers.Dense(1, name=NET_LOGITS)
        aux = [n for n, wanted in (
            (DP_LOGITS, method in _DP_METHODS or net == "importance_sampling"),
            (RN_LOGITS, method in _RN_METHODS),
            (REFUND_LOGITS, net == "cascade"),
            (DR_LOGITS, net == "importance_sampling")) if wanted]
        self.aux_heads = {n: tf.keras.Sequential(
            [MLP(self.aux_units), tf.keras.layers.Dense(1)], name=n) for n in aux}
        self._loss_layer = DelayedFeedbackLoss(method, name="stream_loss")
        self._train_fns: dict = {}

    # --- structure -------------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        """The sample features the model reads."""
        names = list(self.embedding.features_config.input_names)
        if self.embedding.domain_config.vocabulary:
            names.append(self.embedding.domain_config.feature)
        return list(dict.fromkeys(names))

    @property
    def batch_kinds(self) -> tuple:
        """The batch kinds this model trains on (module docstring), in the order a period
        feeds them: the auxiliary heads first, so that the stream losses use weights fitted
        on everything known before the period starts."""
        kinds = []
        if DP_LOGITS in self.aux_heads or RN_LOGITS in self.aux_heads:
            kinds.append(MATURED_CLICKS)
        if REFUND_LOGITS in self.aux_heads or DR_LOGITS in self.aux_heads:
            kinds.append(MATURED_CONVERSIONS)
        kinds.append(STREAM)
        if NET_LOGITS in self.main_heads:
            kinds.append(NET_STREAM)
        return tuple(kinds)

    def head_layer(self, name: str) -> tf.keras.layers.Dense:
        """The final ``Dense(1)`` of a head (e.g. to set a bias in tests)."""
        if name in self.main_heads:
            return self.main_heads[name]
        if name in self.aux_heads:
            return self.aux_heads[name].layers[-1]
        raise KeyError(f"no head {name!r}; heads: {sorted({**self.main_heads, **self.aux_heads})}")

    # --- forward ---------------------------------------------------------------------------

    def call(self, features, training=None):
        x = self.embedding(features)[DENSE]
        h = self.body(x, training=training)
        frozen = tf.stop_gradient(x)
        out = {n: _flat(layer(h)) for n, layer in self.main_heads.items()}
        out.update({n: _flat(head(frozen, training=training))
                    for n, head in self.aux_heads.items()})
        out[CVR] = self._cvr_probability(out)
        if REFUND_LOGITS in out:
            out[REFUND] = tf.sigmoid(self._refund_logits(out))
        if self.net == "cascade":
            out[NET] = out[CVR] * (1.0 - out[REFUND])
        elif self.net is not None:
            out[NET] = tf.sigmoid(out[NET_LOGITS])
        return out

    def _cvr_probability(self, out) -> tf.Tensor:
        if self.method == "bi_defuse":
            return bidefuse_probability(out[IN_WINDOW_LOGITS], out[OUT_WINDOW_LOGITS])
        if self.method == "fnc":
            return fnc_calibrate(out[LOGITS])
        return tf.sigmoid(out[LOGITS])

    def _refund_logits(self, out) -> tf.Tensor:
        if self.refund_prior_correction:
            return out[REFUND_LOGITS] - math.log(self.refund_positive_weight)
        return out[REFUND_LOGITS]

    # --- losses (scalars) --------------------------------------------------------------------

    def batch_loss(self, kind: str, batch: Mapping, out: Mapping) -> tf.Tensor:
        """The mean loss of one batch of ``kind`` given the model outputs ``out``."""
        _check_choice("kind", kind, self.batch_kinds + (PRETRAIN,))
        return {PRETRAIN: self._pretrain_loss, STREAM: self._stream_loss,
                MATURED_CLICKS: self._matured_clicks_loss,
                MATURED_CONVERSIONS: self._matured_conversions_loss,
                NET_STREAM: self._net_stream_loss}[kind](batch, out)

    def _pretrain_loss(self, batch, out) -> tf.Tensor:
        y = batch[sf.LABEL]
        if self.method == "bi_defuse":
            inw = tf.cast(batch[sf.IN_WINDOW], tf.float32)
            loss = (bce_loss(inw, out[IN_WINDOW_LOGITS], sf.IN_WINDOW)
                    + bce_loss(tf.cast(y, tf.float32) * (1.0 - inw), out[OUT_WINDOW_LOGITS]))
        elif self.method == "fnc":
            # FNC's stream collapsed per click: one negative copy, one positive copy if converted.
            loss = importance_weighted_bce(out[LOGITS], tf.cast(y, tf.float32), 1.0)
        else:
            loss = bce_loss(y, out[LOGITS])
        total = _mean(loss)
        if NET_LOGITS in out:
            total += _mean(bce_loss(batch[NET_LABEL], out[NET_LOGITS], NET_LABEL))
        return total

    def _stream_loss(self, batch, out) -> tf.Tensor:
        merged = {**batch, **out}
        return _mean(self._loss_layer({n: merged[n] for n in required_inputs(self.method)}))

    def _matured_clicks_loss(self, batch, out) -> tf.Tensor:
        ones = tf.ones_like(out[DP_LOGITS] if DP_LOGITS in out else out[RN_LOGITS])
        dp_loss, rn_loss = delay_heads_loss(batch[sf.LABEL], batch[sf.IN_WINDOW], ones,
                                            out[DP_LOGITS], out.get(RN_LOGITS))
        return dp_loss + rn_loss

    def _matured_conversions_loss(self, batch, out) -> tf.Tensor:
        total = tf.constant(0.0)
        if REFUND_LOGITS in out:
            # Every row here is a matured conversion; refunds weighted by k (module docstring).
            y = labels_like(batch[REFUND_LABEL], out[REFUND_LOGITS], REFUND_LABEL)
            total += _mean(importance_weighted_bce(out[REFUND_LOGITS],
                                                   self.refund_positive_weight * y, 1.0 - y))
        if DR_LOGITS in out:
            total += _mean(bce_loss(batch[sf.DELAYED_REFUND], out[DR_LOGITS], sf.DELAYED_REFUND))
        return total

    def _net_stream_loss(self, batch, out) -> tf.Tensor:
        if self.net == "direct":
            return _mean(direct_net_cvr_loss(batch[sf.LABEL], out[NET_LOGITS]))
        delayed_refund = out[CVR] * tf.sigmoid(out[DR_LOGITS])
        return _mean(net_conversion_is_loss(batch[sf.LABEL], out[NET_LOGITS], delayed_refund,
                                            tf.sigmoid(out[DP_LOGITS])))

    # --- output-bias priors ------------------------------------------------------------------

    def prior_rates(self, rows_by_kind: Mapping[str, Mapping]) -> dict:
        """Each head's label rate (module docstring) in the rows known before training.

        Args:
          rows_by_kind: ``{kind: {field: array}}`` with the label fields of the ``pretrain``
            rows and, when the model has their heads, of the ``matured_clicks`` and
            ``matured_conversions`` rows. A head whose rows are missing or empty gets no rate.

        Returns:
          ``{head name: rate}``: the main head's target (FNC: ``m / (1 + m)`` for a
          conversion rate ``m``, its stream's positive share), Bi-DEFUSE's in-window and
          out-window rates, the net rate, ``p(delayed positive)``, ``p(real negative |
          observed negative at the window)``, the refund rate of matured conversions (the
          minimizer ``k r / (k r + 1 - r)`` of a re-weighted head) and their delayed-refund
          rate.
        """
        fields = (sf.LABEL, sf.IN_WINDOW, NET_LABEL, REFUND_LABEL, sf.DELAYED_REFUND)
        labels = {k: {n: np.asarray(rows[n], np.float64) for n in fields if n in rows}
                  for k, rows in rows_by_kind.items()}
        pre = labels.get(PRETRAIN, {})
        clicks = labels.get(MATURED_CLICKS, {})
        conversions = labels.get(MATURED_CONVERSIONS, {})

        def rate(rows, name, where=None):
            if name not in rows:
                return None
            values = rows[name] if where is None else rows[name][where]
            return float(values.mean()) if values.size else None

        y = rate(pre, sf.LABEL)
        out_window = ({sf.LABEL: pre[sf.LABEL] * (1.0 - pre[sf.IN_WINDOW])}
                      if sf.IN_WINDOW in pre else {})
        delayed = ({sf.LABEL: clicks[sf.LABEL] * (1.0 - clicks[sf.IN_WINDOW])}
                   if sf.IN_WINDOW in clicks else {})
        observed_negative = clicks[sf.IN_WINDOW] == 0 if sf.IN_WINDOW in clicks else None
        real = {sf.LABEL: 1.0 - clicks[sf.LABEL]} if sf.LABEL in clicks else {}
        wanted = {
            LOGITS: None if y is None else (y / (1.0 + y) if self.method == "fnc" else y),
            IN_WINDOW_LOGITS: rate(pre, sf.IN_WINDOW),
            OUT_WINDOW_LOGITS: rate(out_window, sf.LABEL),
            NET_LOGITS: rate(pre, NET_LABEL),
            DP_LOGITS: rate(delayed, sf.LABEL),
            RN_LOGITS: rate(real, sf.LABEL, observed_negative),
            REFUND_LOGITS: _weighted_rate(rate(conversions, REFUND_LABEL),
                                          self.refund_positive_weight),
            DR_LOGITS: rate(conversions, sf.DELAYED_REFUND),
        }
        heads = {**self.main_heads, **self.aux_heads}
        return {n: r for n, r in wanted.items() if n in heads and r is not None}

    def set_output_biases(self, rates: Mapping[str, float], eps: float = 1e-4) -> None:
        """Starts each named head at its rate: final bias ``log(r / (1 - r))`` (``r`` clipped
        to ``[eps, 1 - eps]``) and final kernel 0, so every row starts at exactly ``r`` (a
        random kernel would add a per-row offset whose sigmoid averages above ``r`` for a
        rare label). The kernel still gets gradients (``dL/dW = h (f - y)``).

        Raises ValueError naming a rate outside ``[0, 1]`` or a head without weights yet.
        """
        for name, r in rates.items():
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"rate of head {name!r} must be in [0, 1], got {r!r}")
            layer = self.head_layer(name)
            if not layer.built:
                raise ValueError("call the model once before set_output_biases (head "
                                 f"{name!r} has no weights yet)")
            r = min(max(r, eps), 1.0 - eps)
            layer.kernel.assign(tf.zeros_like(layer.kernel))
            layer.bias.assign([math.log(r / (1.0 - r))])

    # --- training ----------------------------------------------------------------------------

    def train_batch(self, kind: str, batch: Mapping) -> float:
        """One optimizer step (the compiled optimizer) on a batch of ``kind``; returns its loss
        (computed before the step). Runs as a ``tf.function`` per kind unless the model was
        compiled with ``run_eagerly=True``.

        ``batch`` maps the :attr:`feature_names` and the fields the kind reads to arrays of
        one value (or row) per example.
        """
        _check_choice("kind", kind, self.batch_kinds + (PRETRAIN,))
        if self.optimizer is None:
            raise ValueError("compile(optimizer=...) the model before train_batch")
        if not self._train_fns:
            # Every head's variables exist only after a call, and the optimizer must know all
            # of them before the first step (kinds update different heads).
            self({n: batch[n] for n in self.feature_names})
            self.optimizer.build(self.trainable_variables)
        if self.run_eagerly:  # compile(run_eagerly=True): no tracing (debugging, tiny tests)
            return float(self._train_step(kind, dict(batch)))
        if kind not in self._train_fns:
            self._train_fns[kind] = tf.function(
                lambda b, k=kind: self._train_step(k, b), reduce_retracing=True)
        return float(self._train_fns[kind](dict(batch)))

    def _train_step(self, kind: str, batch) -> tf.Tensor:
        features = {n: batch[n] for n in self.feature_names}
        with tf.GradientTape() as tape:
            loss = self.batch_loss(kind, batch, self(features, training=True))
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    # --- serialization -----------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "features": dataclasses.asdict(self.embedding.features_config),
            "schema": self.embedding.schema.to_json(),
            "domain": dataclasses.asdict(self.embedding.domain_config),
            "method": self.method, "net": self.net,
            "hidden_units": list(self.hidden_units), "aux_units": list(self.aux_units),
            "refund_positive_weight": self.refund_positive_weight,
            "refund_prior_correction": self.refund_prior_correction,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

