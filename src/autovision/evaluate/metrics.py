"""What AutoML Vision's Evaluate tab shows, computed from a split's saved scores (pure).

Conventions, as AutoML Vision defines them:

* a label is predicted for an image when its score is at least the threshold
  (``score >= threshold``), so several labels, or none, may be predicted;
* precision, recall and F1 count (image, label) pairs; "micro" pools the pairs of
  all labels, "macro" is the unweighted mean of the per-label values;
* "@1" metrics consider only each image's highest-scoring label, and only when that
  score reaches the threshold;
* average precision (area under the PR curve) and ROC-AUC are micro-averaged for
  the overall figure, like AutoML's ``auPrc`` and ``auRoc``;
* a ratio with a zero denominator (no predictions, no positives) is 0, as in
  scikit-learn with ``zero_division=0``; a metric that is undefined (a label with no
  positive test image has no average precision) is ``None``, JSON ``null``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, confusion_matrix, log_loss, precision_recall_curve, roc_auc_score

from autovision.evaluate.predictions import BoolArray, SplitPredictions
from autovision.preprocess import FloatArray

DEFAULT_SCORE_THRESHOLD = 0.5
# AutoML's threshold slider: 0.00, 0.05, ..., 1.00.
SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(step * 0.05, 2) for step in range(21))
DEFAULT_TOP_MISTAKES = 10
# PR curves are stored for the report; more points than this add bytes, not information.
MAX_CURVE_POINTS = 101

IntArray = npt.NDArray[np.int64]


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, numerically stable: logits to single-label probabilities."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


def sigmoid(logits: FloatArray) -> FloatArray:
    """Element-wise sigmoid that never overflows: logits to multi-label scores."""
    return np.asarray(np.exp(-np.logaddexp(0.0, -logits)), dtype=np.float32)


def activate(logits: FloatArray, multi_label: bool) -> FloatArray:
    """Scores from logits: per-label sigmoid (multi-label) or softmax (single-label)."""
    return sigmoid(logits) if multi_label else softmax(logits)


def evaluate_predictions(
    predictions: SplitPredictions,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    top_mistakes: int = DEFAULT_TOP_MISTAKES,
) -> dict[str, Any]:
    """The whole evaluation of one split as a JSON-ready dict (the content of evaluation.json)."""
    if not predictions.uris:
        raise ValueError("the split has no images: nothing to evaluate")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"the score threshold must lie in [0, 1], got {score_threshold}")
    truth, scores, labels = predictions.truth, predictions.scores, predictions.labels
    return {
        "task": "MultiLabel" if predictions.multi_label else "SingleLabel",
        "images": len(predictions.uris),
        "labels": labels,
        "scoreThreshold": score_threshold,
        "accuracy": accuracy(predictions, score_threshold),
        "logLoss": logarithmic_loss(predictions),
        "averagePrecision": average_precision(truth, scores, labels),
        "rocAuc": roc_auc(truth, scores, labels) if predictions.multi_label or len(labels) == 2 else None,
        "atThreshold": threshold_metrics(truth, scores, labels, score_threshold),
        "thresholdSweep": [sweep_point(truth, scores, threshold) for threshold in SWEEP_THRESHOLDS],
        "precisionRecallCurves": precision_recall_curves(truth, scores, labels),
        "confusionMatrix": None if predictions.multi_label else single_label_confusion(predictions),
        "mostConfidentMistakes": confident_mistakes(predictions, top_mistakes),
    }


def accuracy(predictions: SplitPredictions, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
    """Top-1 accuracy (single-label); exact-match accuracy at the threshold (multi-label)."""
    if predictions.multi_label:
        exact = (predicted_at(predictions.scores, score_threshold) == predictions.truth).all(axis=1)
        return float(exact.mean())
    rows = np.arange(len(predictions.uris))
    return float(predictions.truth[rows, predictions.top1].mean())


def variant_metrics(
    predictions: SplitPredictions, variant_scores: FloatArray, score_threshold: float = DEFAULT_SCORE_THRESHOLD
) -> dict[str, float]:
    """Accuracy of another build of the model (say int8) on the same split, and its top-1 agreement."""
    variant = SplitPredictions(
        labels=predictions.labels,
        uris=predictions.uris,
        truth=predictions.truth,
        scores=variant_scores,
        multi_label=predictions.multi_label,
    )
    return {
        "accuracy": accuracy(variant, score_threshold),
        "top1Agreement": float((variant.top1 == predictions.top1).mean()),
    }


def logarithmic_loss(predictions: SplitPredictions) -> float:
    """Cross-entropy of the true labels: categorical (single-label) or mean binary (multi-label)."""
    scores = predictions.scores.astype(np.float64)
    if predictions.multi_label:
        return float(log_loss(predictions.truth.ravel().astype(int), scores.ravel(), labels=[0, 1]))
    # float32 softmax sums miss 1 by ~1e-7, which scikit-learn warns about; renormalise in float64.
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    targets = predictions.truth.argmax(axis=1)
    return float(log_loss(targets, probabilities, labels=list(range(len(predictions.labels)))))


def predicted_at(scores: FloatArray, threshold: float) -> BoolArray:
    """The labels predicted at a threshold: every score at or above it."""
    return np.asarray(scores >= threshold, dtype=np.bool_)


def top1_predicted_at(scores: FloatArray, threshold: float) -> BoolArray:
    """Each image's best label, predicted only if its score reaches the threshold."""
    rows = np.arange(len(scores))
    best = scores.argmax(axis=1)
    predicted = np.zeros(scores.shape, dtype=np.bool_)
    predicted[rows, best] = scores[rows, best] >= threshold
    return predicted


def pair_counts(truth: BoolArray, predicted: BoolArray) -> tuple[IntArray, IntArray, IntArray]:
    """Per-label true positives, false positives and false negatives."""
    true_positives = (truth & predicted).sum(axis=0)
    false_positives = (~truth & predicted).sum(axis=0)
    false_negatives = (truth & ~predicted).sum(axis=0)
    return true_positives, false_positives, false_negatives


def ratios(true_positives: IntArray, false_positives: IntArray, false_negatives: IntArray) -> dict[str, FloatArray]:
    """Precision, recall and F1 from counts (element-wise); 0 where a denominator is 0."""
    return {
        "precision": _divide(true_positives, true_positives + false_positives),
        "recall": _divide(true_positives, true_positives + false_negatives),
        "f1": _divide(2 * true_positives, 2 * true_positives + false_positives + false_negatives),
    }


def _divide(numerator: IntArray, denominator: IntArray) -> FloatArray:
    numerator_f = np.asarray(numerator, dtype=np.float64)
    denominator_f = np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator_f)
    np.divide(numerator_f, denominator_f, out=out, where=denominator_f > 0)
    return np.asarray(out, dtype=np.float32)


def _micro(truth: BoolArray, predicted: BoolArray) -> dict[str, float]:
    """Ratios of the counts pooled over all labels."""
    pooled = (np.asarray(count.sum()) for count in pair_counts(truth, predicted))
    return {name: float(value) for name, value in ratios(*pooled).items()}


def threshold_metrics(truth: BoolArray, scores: FloatArray, labels: list[str], threshold: float) -> dict[str, Any]:
    """Per-label, micro and macro precision/recall/F1 and the @1 metrics at one threshold."""
    predicted = predicted_at(scores, threshold)
    true_positives, false_positives, false_negatives = pair_counts(truth, predicted)
    per_label = ratios(true_positives, false_positives, false_negatives)
    at1 = _micro(truth, top1_predicted_at(scores, threshold))
    return {
        "threshold": threshold,
        "micro": _micro(truth, predicted),
        "macro": {name: float(values.mean()) for name, values in per_label.items()},
        "precisionAt1": at1["precision"],
        "recallAt1": at1["recall"],
        "f1At1": at1["f1"],
        "perLabel": {
            label: {
                "precision": float(per_label["precision"][j]),
                "recall": float(per_label["recall"][j]),
                "f1": float(per_label["f1"][j]),
                "support": int(truth[:, j].sum()),
                "truePositives": int(true_positives[j]),
                "falsePositives": int(false_positives[j]),
                "falseNegatives": int(false_negatives[j]),
            }
            for j, label in enumerate(labels)
        },
    }


def sweep_point(truth: BoolArray, scores: FloatArray, threshold: float) -> dict[str, float]:
    """One row of the threshold table: micro precision/recall/F1 and the @1 metrics."""
    micro = _micro(truth, predicted_at(scores, threshold))
    at1 = _micro(truth, top1_predicted_at(scores, threshold))
    return {
        "threshold": threshold,
        **micro,
        "precisionAt1": at1["precision"],
        "recallAt1": at1["recall"],
        "f1At1": at1["f1"],
    }


def _has_both_classes(column: BoolArray) -> bool:
    return bool(column.any() and not column.all())


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


def average_precision(truth: BoolArray, scores: FloatArray, labels: list[str]) -> dict[str, Any]:
    """Area under the PR curve per label (None without positives), micro (headline) and macro."""
    per_label: list[float | None] = [
        float(average_precision_score(truth[:, j], scores[:, j])) if truth[:, j].any() else None
        for j in range(len(labels))
    ]
    micro = float(average_precision_score(truth.ravel(), scores.ravel())) if truth.any() else None
    return {"micro": micro, "macro": _mean_defined(per_label), "perLabel": dict(zip(labels, per_label, strict=True))}


def roc_auc(truth: BoolArray, scores: FloatArray, labels: list[str]) -> dict[str, Any]:
    """ROC-AUC per label (one against the rest), micro and macro; None where a label is all one class."""
    per_label: list[float | None] = [
        float(roc_auc_score(truth[:, j], scores[:, j])) if _has_both_classes(truth[:, j]) else None
        for j in range(len(labels))
    ]
    micro = float(roc_auc_score(truth.ravel(), scores.ravel())) if _has_both_classes(truth.ravel()) else None
    return {"micro": micro, "macro": _mean_defined(per_label), "perLabel": dict(zip(labels, per_label, strict=True))}


def _curve(truth: BoolArray, scores: FloatArray) -> dict[str, list[float]] | None:
    if not truth.any():
        return None
    precision, recall, _ = precision_recall_curve(truth, scores)
    keep = np.unique(np.linspace(0, len(precision) - 1, min(len(precision), MAX_CURVE_POINTS)).round().astype(int))
    return {
        "precision": [round(float(value), 4) for value in precision[keep]],
        "recall": [round(float(value), 4) for value in recall[keep]],
    }


def precision_recall_curves(truth: BoolArray, scores: FloatArray, labels: list[str]) -> dict[str, Any]:
    """PR curves (at most MAX_CURVE_POINTS points each) for the micro average and each label."""
    return {
        "micro": _curve(truth.ravel(), scores.ravel()),
        "perLabel": {label: _curve(truth[:, j], scores[:, j]) for j, label in enumerate(labels)},
    }


def single_label_confusion(predictions: SplitPredictions) -> dict[str, Any]:
    """Rows are true labels, columns the top-1 predicted labels (single-label tasks only)."""
    indices = list(range(len(predictions.labels)))
    matrix = confusion_matrix(predictions.truth.argmax(axis=1), predictions.top1, labels=indices)
    return {"labels": predictions.labels, "matrix": matrix.tolist()}


def confident_mistakes(predictions: SplitPredictions, count: int) -> list[dict[str, Any]]:
    """The images whose top-1 label is wrong, most confident first: what to look at first."""
    rows = np.arange(len(predictions.uris))
    best = predictions.top1
    best_scores = predictions.scores[rows, best]
    wrong = np.flatnonzero(~predictions.truth[rows, best])
    ranked = wrong[np.argsort(-best_scores[wrong], kind="stable")][:count]
    return [
        {
            "uri": predictions.uris[i],
            "trueLabels": [predictions.labels[j] for j in np.flatnonzero(predictions.truth[i])],
            "predictedLabel": predictions.labels[best[i]],
            "score": float(best_scores[i]),
        }
        for i in ranked
    ]
