r"""Delayed-feedback conversion losses: conversions arrive hours to days after the click, so a
stream trained on in near real time holds *fake negatives* (clicks whose conversion has not
arrived yet) and, depending on the method, re-ingested duplicates.

Every method is importance weighting of cross-entropy (:mod:`.importance`): with ``p`` the
true distribution of (click, final label) and ``q`` the distribution of the stream the method
trains on, ``E_p[l] = E_q[(p / q) l]``; each module writes out its stream's ``q(y | x)``, the
weights ``p / q`` and what they are estimated from.

=================  ====================================================================
module             method
=================  ====================================================================
:mod:`.importance`  the weighted cross-entropy; ``bce_loss`` for Vanilla / Oracle / FNC
:mod:`.fake_negative`  FNW, FNC (Ktena et al., RecSys 2019)
:mod:`.esdfm`      ES-DFM (Yang et al., AAAI 2021)
:mod:`.defer`      DEFER (Gu et al., KDD 2021)
:mod:`.defuse`     DEFUSE (Chen et al., WWW 2022)
:mod:`.bidefuse`   Bi-DEFUSE (same paper): in-window and out-window heads
:mod:`.auxiliary`  the auxiliary heads ``f_dp``, ``f_rn``: their labels, masks, loss
:mod:`.layer`      the method registry and the Keras layer ``DelayedFeedbackLoss``
=================  ====================================================================

Per-example functions return float32 losses shaped like the logits, not reduced; their
per-example inputs (labels, stream fields, auxiliary probabilities) must have one value per
logit, and bad values (a label not 0/1, a probability outside [0, 1], a delayed positive
with label 0) raise an error naming the field and quoting the values.
"""
from ranking.losses.delayed_feedback.auxiliary import (click_time, defer_dp_targets,
                                                       delay_head_targets, delay_heads_loss,
                                                       matured_mask)
from ranking.losses.delayed_feedback.bidefuse import (bidefuse_loss,
                                                      bidefuse_out_window_weights,
                                                      bidefuse_probability)
from ranking.losses.delayed_feedback.defer import defer_loss, defer_weights
from ranking.losses.delayed_feedback.defuse import defuse_loss, defuse_weights
from ranking.losses.delayed_feedback.esdfm import esdfm_loss, esdfm_weights
from ranking.losses.delayed_feedback.fake_negative import (FakeNegativeWeightedLoss,
                                                           fnc_calibrate, fnc_loss, fnw_loss,
                                                           fnw_weights)
from ranking.losses.delayed_feedback.importance import (bce_loss, importance_weighted_bce,
                                                        weighted_bce)
from ranking.losses.delayed_feedback.layer import (METHODS, DelayedFeedbackLoss,
                                                   delayed_feedback_loss, required_inputs)

__all__ = [
    "bce_loss", "importance_weighted_bce", "weighted_bce",
    "fnw_weights", "fnw_loss", "fnc_loss", "fnc_calibrate", "FakeNegativeWeightedLoss",
    "esdfm_weights", "esdfm_loss", "defer_weights", "defer_loss",
    "defuse_weights", "defuse_loss",
    "bidefuse_out_window_weights", "bidefuse_loss", "bidefuse_probability",
    "click_time", "matured_mask", "delay_head_targets", "delay_heads_loss", "defer_dp_targets",
    "METHODS", "required_inputs", "delayed_feedback_loss", "DelayedFeedbackLoss",
]
