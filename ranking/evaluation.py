"""Evaluating a trained model on a sample split: predictions, labels, slices, truth -> report.

The report (``ranking.metrics.evaluate``) has, per task, overall and per domain and per user
tier: count, positives, AUC, UAUC, PCOC, log loss and, on simulated data, the *oracle AUC*:
the AUC of the simulator's true probability on the same rows, the best any model can do.

Truth columns (simulated samples only): ``p_click`` = P(click), ``p_pay`` = P(pay | click).
So the oracle of a click task is ``p_click``, of a conversion task over all impressions
``p_click * p_pay``, of a conversion task over clicks (``mask_label: click``) ``p_pay``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from ranking.config import ESMM_CVR_TASK, ExperimentConfig
from ranking.data.input import TimeRange, make_dataset
from ranking.data.schema import Schema
from ranking.metrics import TaskEval, evaluate

SLICES = ("domain", "user_tier")
ID = "impression_id"
CONTEXT = ("user_id", "domain", "user_tier", "p_click", "p_pay")


def predict_frame(model: tf.keras.Model, files, schema: Schema, config: ExperimentConfig,
                  time_range: Optional[TimeRange] = None, batch_size: int = 4096
                  ) -> dict[str, np.ndarray]:
    """Column arrays: ``pred_<output>`` per model output, every label, and the context
    columns the schema has (user, domain, tier, truth)."""
    predict = tf.function(lambda features: model(features, training=False))
    return _frame(files, schema, config, time_range, batch_size, predict)


def context_frame(files, schema: Schema, config: ExperimentConfig,
                  time_range: Optional[TimeRange] = None, batch_size: int = 4096
                  ) -> dict[str, np.ndarray]:
    """Labels and context columns of the rows, in file order, without predictions (to join
    predictions made elsewhere, e.g. over gRPC, by row order)."""
    return _frame(files, schema, config, time_range, batch_size, None)


def _frame(files, schema, config, time_range, batch_size, predict) -> dict[str, np.ndarray]:
    extra = [c for c in (ID, *CONTEXT) if c in schema and c not in config.feature_names]
    ds = make_dataset(files, schema, config, training=False, time_range=time_range,
                      batch_size=batch_size, extra_features=extra)
    columns: dict[str, list] = {}
    for features, labels in ds:
        batch = dict(labels)
        if predict is not None:
            batch.update({f"pred_{k}": v for k, v in predict(features).items()})
        batch.update({c: features[c] for c in (ID, *CONTEXT) if c in features})
        for name, value in batch.items():
            columns.setdefault(name, []).append(value.numpy())
    if not columns:
        raise ValueError(f"no samples in {files} within {time_range}")
    frame = {k: np.concatenate(v) for k, v in columns.items()}
    for k, v in frame.items():
        if v.dtype == object:
            frame[k] = v.astype(str)
    if "p_click" in frame and "p_pay" in frame:
        frame["p_click_pay"] = frame["p_click"] * frame["p_pay"]
    return frame


def task_evals(config: ExperimentConfig, frame: dict) -> list[TaskEval]:
    """One TaskEval per model output, with its label, mask and oracle column."""
    by_name = {t.name: t for t in config.tasks}
    evals = []
    for key in frame:
        if not key.startswith("pred_"):
            continue
        name = key[len("pred_"):]
        task = by_name.get(name)
        if task is not None:
            label, mask = task.label, task.mask_label
        elif name == ESMM_CVR_TASK:  # ESMM's untrained-alone output: conversion given click
            label, mask = _conversion_label(config), "click"
        else:
            continue
        truth = _truth_column(label, mask)
        evals.append(TaskEval(name=name, label=label, prediction=key,
                              truth=truth if truth in frame else None, mask=mask))
    return evals


def _conversion_label(config: ExperimentConfig) -> str:
    labels = [t.label for t in config.tasks if t.label != "click"]
    return labels[0] if labels else "conversion"


def _truth_column(label: str, mask: Optional[str]) -> Optional[str]:
    if label == "click":
        return "p_click"
    if label == "conversion":
        return "p_pay" if mask == "click" else "p_click_pay"
    return None


def evaluate_frame(frame: dict, config: ExperimentConfig) -> dict:
    """The metrics report of a frame with ``pred_<output>`` columns."""
    slices = [s for s in SLICES if s in frame]
    return evaluate(frame, task_evals(config, frame), slices,
                    user_column="user_id" if "user_id" in frame else None)


def evaluate_model(model, files, schema: Schema, config: ExperimentConfig,
                   time_range: Optional[TimeRange] = None) -> dict:
    """The metrics report of ``model`` on the rows of ``files`` in ``time_range``."""
    return evaluate_frame(predict_frame(model, files, schema, config, time_range), config)
