"""Evaluation on the test split: AutoML Vision's Evaluate tab as files.

``metrics`` computes everything from saved scores (pure), ``predictions`` saves and
loads those scores, ``tables`` turns an evaluation into CSV and summary rows.
``scoring`` (the final model's test scores, with torch) and ``files`` (writing
evaluation.json, the CSV and report.html) are for the pipeline and not imported here.
"""

from __future__ import annotations

from autovision.evaluate.metrics import (
    DEFAULT_SCORE_THRESHOLD,
    SWEEP_THRESHOLDS,
    activate,
    evaluate_predictions,
    sigmoid,
    softmax,
    variant_metrics,
)
from autovision.evaluate.predictions import SplitPredictions
from autovision.evaluate.tables import confusion_matrix_csv, per_label_rows, summary_rows

__all__ = [
    "DEFAULT_SCORE_THRESHOLD",
    "SWEEP_THRESHOLDS",
    "SplitPredictions",
    "activate",
    "confusion_matrix_csv",
    "evaluate_predictions",
    "per_label_rows",
    "sigmoid",
    "softmax",
    "summary_rows",
    "variant_metrics",
]
