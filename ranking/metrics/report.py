"""The metrics report: every task's metrics overall and per slice, as JSON and as a table.

``evaluate`` takes a *frame* -- a dict of equal-length 1-D numpy arrays, one per column (e.g.
``click``, ``conversion``, ``pred_ctr``, ``pred_cvr``, ``p_click``, ``user_id``, ``domain``,
``user_tier``) -- and a list of :class:`TaskEval` saying which columns hold each task's label,
prediction, optional true probability and optional row mask. For every task it reports, on
all (masked) rows and on each value of each slice column:

* ``count``, ``positives`` -- rows evaluated and positive labels among them;
* ``auc``, ``uauc`` (+ ``uauc_users``, ``uauc_users_skipped``), ``pcoc``, ``log_loss`` -- as
  defined in :mod:`ranking.metrics.auc` and :mod:`ranking.metrics.calibration`;
* ``oracle_auc`` -- AUC of the *true* probability on the same rows (only with ``truth``, e.g.
  on simulated data): the best AUC any model could reach, since labels are Bernoulli draws;
* ``auc_gap`` -- ``oracle_auc - auc``, how much ranking quality the model leaves on the table,
  comparable across slices whose attainable AUC differs.

The report holds only dicts, lists, str, int, float and None; undefined metrics (NaN, or not
computed) are stored as None so the JSON is strict (no ``NaN`` tokens). ``format_table`` shows
them as ``-``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ranking.metrics._checks import as_labels, as_probabilities, check_same_length
from ranking.metrics.auc import auc, uauc
from ranking.metrics.calibration import log_loss, pcoc

OVERALL = "overall"

# (report key, table header) in display order; the table shows every metric but the
# skipped-user count, which is in the JSON for whoever needs it.
_TABLE_COLUMNS = (
    ("count", "count"), ("positives", "pos"), ("auc", "auc"), ("uauc", "uauc"),
    ("uauc_users", "users"), ("pcoc", "pcoc"), ("log_loss", "logloss"),
    ("oracle_auc", "oracle_auc"), ("auc_gap", "auc_gap"),
)


@dataclasses.dataclass(frozen=True)
class TaskEval:
    """Which frame columns describe one task to evaluate.

    Attributes:
        name: task name used as the report key, e.g. ``"ctr"``.
        label: column of 0/1 labels, e.g. ``"click"``.
        prediction: column of predicted probabilities, e.g. ``"pred_ctr"``.
        truth: optional column of true probabilities (simulated data), enabling oracle AUC.
        mask: optional 0/1 column; only rows where it is 1 are evaluated (e.g. CVR on
            clicked rows, ``mask="click"``).
    """

    name: str
    label: str
    prediction: str
    truth: Optional[str] = None
    mask: Optional[str] = None


def _column(frame: Mapping[str, Any], name: str) -> np.ndarray:
    """The named column as an array, with an error listing the columns if it is missing."""
    if name not in frame:
        raise ValueError(f"frame has no column {name!r}; columns: {sorted(frame)}")
    return np.asarray(frame[name])


def _json_float(value: float) -> Optional[float]:
    """A plain float, or None where the metric is undefined (NaN)."""
    return None if value is None or math.isnan(value) else float(value)


def _slice_key(value: Any) -> str:
    """JSON object keys must be strings; decode bytes ids so they do not read ``b'...'``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _metrics(labels: np.ndarray, predictions: np.ndarray, users: Optional[np.ndarray],
             truth: Optional[np.ndarray]) -> Dict[str, Any]:
    """All metrics of one (task, slice) on already-selected rows."""
    model_auc = auc(labels, predictions)
    oracle_auc = auc(labels, truth) if truth is not None else float("nan")
    user_auc = uauc(labels, predictions, users) if users is not None else None
    return {
        "count": int(len(labels)),
        "positives": int(np.count_nonzero(labels)),
        "auc": _json_float(model_auc),
        "uauc": _json_float(user_auc.value) if user_auc is not None else None,
        "uauc_users": user_auc.users_counted if user_auc is not None else None,
        "uauc_users_skipped": user_auc.users_skipped if user_auc is not None else None,
        "pcoc": _json_float(pcoc(labels, predictions)),
        "log_loss": _json_float(log_loss(labels, predictions)),
        "oracle_auc": _json_float(oracle_auc),
        "auc_gap": _json_float(oracle_auc - model_auc),
    }


def _groups(values: np.ndarray):
    """(value, row indices) pairs, one per distinct value, in sorted value order."""
    distinct, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
    rows_by_code = np.split(np.argsort(codes.reshape(-1), kind="stable"),
                            np.cumsum(counts)[:-1])
    return zip(distinct.tolist(), rows_by_code)


def _evaluate_task(frame: Mapping[str, Any], task: TaskEval, slices: Sequence[str],
                   user_column: Optional[str]) -> Dict[str, Any]:
    """Validates one task's columns and computes its overall and per-slice metrics."""
    used = [name for name in (task.label, task.prediction, task.truth, task.mask, user_column,
                              *slices) if name]
    check_same_length(**{f"frame[{name!r}]": _column(frame, name) for name in used})

    def probabilities(name: Optional[str]) -> Optional[np.ndarray]:
        return as_probabilities(f"frame[{name!r}]", _column(frame, name)) if name else None

    # Keyed by the argument names of _metrics.
    columns = {
        "labels": as_labels(f"frame[{task.label!r}]", _column(frame, task.label)),
        "predictions": probabilities(task.prediction),
        "truth": probabilities(task.truth),
        "users": _column(frame, user_column) if user_column else None,
    }
    rows = (np.flatnonzero(as_labels(f"frame[{task.mask!r}]", _column(frame, task.mask)))
            if task.mask else np.arange(len(columns["labels"])))

    def metrics_on(selected: np.ndarray) -> Dict[str, Any]:
        return _metrics(**{key: (column[selected] if column is not None else None)
                           for key, column in columns.items()})

    return {
        "label": task.label, "prediction": task.prediction, "truth": task.truth,
        "mask": task.mask,
        OVERALL: metrics_on(rows),
        "slices": {
            name: {_slice_key(value): metrics_on(rows[in_group])
                   for value, in_group in _groups(_column(frame, name)[rows])}
            for name in slices
        },
    }


def evaluate(frame: Mapping[str, Any], tasks: Sequence[TaskEval], slices: Sequence[str] = (),
             user_column: Optional[str] = "user_id") -> Dict[str, Any]:
    """Builds the metrics report for several tasks, overall and per slice value.

    Args:
        frame: column name -> 1-D array, all of one length.
        tasks: what to evaluate; names must be unique.
        slices: columns to break results down by (e.g. ``["domain", "user_tier"]``); each
            distinct value of each column gets its own metrics, computed on the task's
            (masked) rows having that value.
        user_column: column of user ids for UAUC; None skips UAUC (reported as None).

    Returns:
        ``{"user_column": ..., "slices": [...], "tasks": {name: {"label", "prediction",
        "truth", "mask", "overall": METRICS, "slices": {column: {str(value): METRICS}}}}}``
        where METRICS is a dict with keys count, positives, auc, uauc, uauc_users,
        uauc_users_skipped, pcoc, log_loss, oracle_auc, auc_gap (None where undefined).

    Raises:
        ValueError: on a missing column, unequal column lengths, invalid labels/predictions
            (the message names the column) or duplicate task names.
    """
    names = [task.name for task in tasks]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"tasks have duplicate names: {duplicates}")
    return {
        "user_column": user_column,
        "slices": list(slices),
        "tasks": {task.name: _evaluate_task(frame, task, slices, user_column)
                  for task in tasks},
    }


def write_json(report: Mapping[str, Any], path: str) -> None:
    """Writes the report as indented, strict JSON, creating parent directories.

    Args:
        report: a report from :func:`evaluate`.
        path: destination file.
    """
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, allow_nan=False)
        handle.write("\n")


def _cell(value: Any) -> str:
    """Table text of one metric: ints as is, floats to 4 decimals, undefined as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _table_rows(report: Mapping[str, Any]) -> List[List[str]]:
    """One row of cells per (task, slice value), overall first within each task."""
    rows = []
    for task_name, task in report["tasks"].items():
        labelled = [(OVERALL, task[OVERALL])] + [
            (f"{column}={value}", metrics)
            for column, by_value in task["slices"].items()
            for value, metrics in by_value.items()]
        for slice_name, metrics in labelled:
            rows.append([task_name, slice_name] + [_cell(metrics[key])
                                                   for key, _ in _TABLE_COLUMNS])
    return rows


def format_table(report: Mapping[str, Any]) -> str:
    """Renders a report as a fixed-width text table, one row per task x slice value.

    Args:
        report: a report from :func:`evaluate`.

    Returns:
        The table; text columns left-aligned, numbers right-aligned, undefined as ``-``.
    """
    header = ["task", "slice"] + [title for _, title in _TABLE_COLUMNS]
    rows = _table_rows(report)
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        text = [cell.ljust(width) for cell, width in zip(cells[:2], widths)]
        numbers = [cell.rjust(width) for cell, width in zip(cells[2:], widths[2:])]
        return "  ".join(text + numbers).rstrip()

    return "\n".join([line(header), line(["-" * width for width in widths])]
                     + [line(row) for row in rows])
