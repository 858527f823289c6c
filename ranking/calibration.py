"""Post-training calibration: one logit offset per output, fitted on the validation day.

Models that overfit a little after an epoch over sparse ids are often well ranked but biased
(PCOC != 1), and the bias moves with the amount of training. A logit offset ``b`` fixes the
aggregate: it is the root of

    f(b) = sum_i w_i sigmoid(z_i + b) - sum_i w_i y_i,

which exists and is unique when the labels have both classes (``f`` increases strictly from
``-sum w y`` to ``sum w (1 - y)``). Newton's method with ``f'(b) = sum_i w_i s_i (1 - s_i)``,
step clipped to +-2 for the first iterations far from the root, converges in a few steps. A
shift of the logit keeps the ranking (AUC) unchanged. For ESMM, offsetting the CTR logit
rescales CTCVR accordingly, since ``ctcvr = ctr * cvr``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from ranking.config import ExperimentConfig


def fit_logit_offset(logits, labels, weights=None, iterations: int = 50) -> float:
    """The ``b`` with ``sum w sigmoid(z + b) == sum w y`` (see the module doc)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, np.float64)
    target = float(np.sum(w * y))
    if target <= 0 or target >= np.sum(w):
        raise ValueError(f"calibration needs both classes among the weighted labels; got "
                         f"{target} positives of {np.sum(w)}")
    b = 0.0
    for _ in range(iterations):
        s = 1.0 / (1.0 + np.exp(-(z + b)))
        f = float(np.sum(w * s)) - target
        slope = float(np.sum(w * s * (1.0 - s)))
        step = float(np.clip(f / max(slope, 1e-12), -2.0, 2.0))
        b -= step
        if abs(step) < 1e-10:
            break
    return b


def calibrate(model, dataset: tf.data.Dataset, config: ExperimentConfig,
              names: Optional[list] = None) -> dict[str, float]:
    """Fits and sets ``model.logit_offsets[name]`` for each of ``config.training.calibrate``
    (or ``names``) on ``dataset`` batches of ``(features, labels)``; returns the offsets."""
    names = list(config.training.calibrate if names is None else names)
    tasks = {t.name: t for t in config.tasks}
    if not names:
        return {}
    logits_fn = tf.function(lambda f: model.logits(f, training=False))
    columns: dict[str, list] = {}
    for features, labels in dataset:
        logits = logits_fn(features)
        for name in names:
            task = tasks[name]
            columns.setdefault(name, []).append(logits[name].numpy())
            columns.setdefault(task.label, []).append(labels[task.label].numpy())
            if task.mask_label:
                columns.setdefault(task.mask_label, []).append(labels[task.mask_label].numpy())
    data = {k: np.concatenate(v) for k, v in columns.items()}
    offsets = {}
    for name in names:
        task = tasks[name]
        current = float(model.logit_offsets[name].numpy())
        # The logits above include the current offset; fit the change and add it.
        delta = fit_logit_offset(data[name], data[task.label],
                                 data[task.mask_label] if task.mask_label else None)
        model.logit_offsets[name].assign(current + delta)
        offsets[name] = current + delta
    return offsets
