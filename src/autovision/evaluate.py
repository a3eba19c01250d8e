"""Evaluation metrics on the test split (pure: arrays in, a JSON-ready dict out).

The walking skeleton reports top-1 metrics; the threshold sweep, PR curves and the
HTML report arrive with the evaluation issue.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

from autovision.preprocess import FloatArray

LabelArray = npt.NDArray[np.int64]


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def _averaged(targets: LabelArray, predicted: LabelArray, labels: list[str], average: str) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        targets, predicted, labels=list(range(len(labels))), average=average, zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def _per_label(targets: LabelArray, predicted: LabelArray, labels: list[str]) -> dict[str, dict[str, float]]:
    precision, recall, f1, support = precision_recall_fscore_support(
        targets, predicted, labels=list(range(len(labels))), zero_division=0
    )
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def _confident_mistakes(
    probabilities: FloatArray, targets: LabelArray, labels: list[str], uris: list[str], count: int
) -> list[dict[str, Any]]:
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != targets)
    ranked = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]
    return [
        {
            "uri": uris[i],
            "trueLabel": labels[targets[i]],
            "predictedLabel": labels[predicted[i]],
            "score": float(probabilities[i, predicted[i]]),
        }
        for i in ranked
    ]


def evaluate_classifier(
    probabilities: FloatArray, targets: LabelArray, labels: list[str], uris: list[str], top_mistakes: int = 10
) -> dict[str, Any]:
    """Single-label metrics AutoML's Evaluate tab leads with, from test-split scores."""
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(labels)))
    return {
        "images": len(targets),
        "accuracy": float(accuracy_score(targets, predicted)),
        "logLoss": float(log_loss(targets, probabilities, labels=indices)),
        "micro": _averaged(targets, predicted, labels, "micro"),
        "macro": _averaged(targets, predicted, labels, "macro"),
        "perLabel": _per_label(targets, predicted, labels),
        "confusionMatrix": {
            "labels": labels,
            "matrix": confusion_matrix(targets, predicted, labels=indices).tolist(),
        },
        "mostConfidentMistakes": _confident_mistakes(probabilities, targets, labels, uris, top_mistakes),
    }


def confusion_matrix_csv(evaluation: dict[str, Any]) -> str:
    """The confusion matrix as CSV: rows are true labels, columns predicted."""
    labels = evaluation["confusionMatrix"]["labels"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\predicted", *labels])
    for label, row in zip(labels, evaluation["confusionMatrix"]["matrix"], strict=True):
        writer.writerow([label, *row])
    return buffer.getvalue()
