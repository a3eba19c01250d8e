"""Tables derived from an evaluation: the CSV confusion matrix and the CLI's summary rows (pure)."""

from __future__ import annotations

import csv
import io
from typing import Any


def confusion_matrix_csv(evaluation: dict[str, Any]) -> str:
    """The confusion matrix as CSV (rows true labels, columns predicted), for spreadsheets."""
    confusion = evaluation["confusionMatrix"]
    if confusion is None:
        raise ValueError("multi-label evaluations have no confusion matrix")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\predicted", *confusion["labels"]])
    for label, row in zip(confusion["labels"], confusion["matrix"], strict=True):
        writer.writerow([label, *row])
    return buffer.getvalue()


def format_metric(value: float | None) -> str:
    """Four decimals, or "n/a" for a metric that is undefined on this split."""
    return "n/a" if value is None else f"{value:.4f}"


def summary_rows(evaluation: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures, in the order AutoML's Evaluate tab shows them."""
    at = evaluation["atThreshold"]
    threshold = f"@ {at['threshold']:.2f}"
    rows = [
        ("test images", str(evaluation["images"])),
        ("average precision (micro)", format_metric(evaluation["averagePrecision"]["micro"])),
        ("accuracy", format_metric(evaluation["accuracy"])),
        ("log loss", format_metric(evaluation["logLoss"])),
        (f"precision {threshold} (micro)", format_metric(at["micro"]["precision"])),
        (f"recall {threshold} (micro)", format_metric(at["micro"]["recall"])),
        (f"F1 {threshold} (micro / macro)", f"{format_metric(at['micro']['f1'])} / {format_metric(at['macro']['f1'])}"),
        (f"precision@1 {threshold}", format_metric(at["precisionAt1"])),
        (f"recall@1 {threshold}", format_metric(at["recallAt1"])),
    ]
    if evaluation["rocAuc"] is not None:
        rows.append(("ROC-AUC (micro)", format_metric(evaluation["rocAuc"]["micro"])))
    if "int8" in evaluation:
        rows.append(("int8 ONNX accuracy", format_metric(evaluation["int8"]["accuracy"])))
    return rows


PER_LABEL_COLUMNS = ("label", "precision", "recall", "F1", "average precision", "support")


def per_label_rows(evaluation: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per label, columns as PER_LABEL_COLUMNS, at the evaluation's threshold."""
    per_label = evaluation["atThreshold"]["perLabel"]
    precision = evaluation["averagePrecision"]["perLabel"]
    return [
        (
            label,
            format_metric(values["precision"]),
            format_metric(values["recall"]),
            format_metric(values["f1"]),
            format_metric(precision[label]),
            str(values["support"]),
        )
        for label, values in per_label.items()
    ]
