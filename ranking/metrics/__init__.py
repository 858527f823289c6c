"""Evaluation metrics for the ranking models and the metrics report.

* :mod:`ranking.metrics.auc` -- ``auc``, ``uauc``, ``pr_auc`` (ranking quality);
* :mod:`ranking.metrics.calibration` -- ``pcoc``, ``log_loss``, ``calibration_by_bucket``;
* :mod:`ranking.metrics.report` -- ``evaluate`` (per task x slice), ``write_json``,
  ``format_table``.

Each module's docstring defines its metrics precisely. All are plain numpy; no TensorFlow.
"""
from ranking.metrics.auc import UAUCResult, auc, pr_auc, uauc
from ranking.metrics.calibration import calibration_by_bucket, log_loss, pcoc
from ranking.metrics.report import TaskEval, evaluate, format_table, write_json

__all__ = [
    "TaskEval", "UAUCResult", "auc", "calibration_by_bucket", "evaluate", "format_table",
    "log_loss", "pcoc", "pr_auc", "uauc", "write_json",
]
