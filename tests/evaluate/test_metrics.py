"""Evaluation metrics on hand-made arrays whose right answers are worked out by hand in tests/support/evaluate.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from autovision.evaluate import (
    SWEEP_THRESHOLDS,
    SplitPredictions,
    confusion_matrix_csv,
    evaluate_predictions,
    variant_metrics,
)
from tests.support.evaluate import MULTI, SINGLE


def test_accuracy_log_loss_and_confusion(single: dict[str, Any]) -> None:
    assert single["task"] == "SingleLabel"
    assert single["images"] == 4
    assert single["accuracy"] == 0.5
    assert single["logLoss"] == pytest.approx(-(math.log(0.7) + math.log(0.6) + math.log(0.4) + math.log(0.3)) / 4)
    # rows true a, b, c; columns predicted a, b, c
    assert single["confusionMatrix"] == {"labels": ["a", "b", "c"], "matrix": [[1, 1, 0], [0, 1, 0], [1, 0, 0]]}
    assert single["rocAuc"] is None, "ROC-AUC is reported for binary and multi-label tasks only"


def test_threshold_metrics_at_one_half(single: dict[str, Any]) -> None:
    # predicted at >= .5: image 0 a, image 1 b, image 2 a
    at = single["atThreshold"]
    assert at["threshold"] == 0.5
    assert at["perLabel"]["a"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "support": 2,
        "truePositives": 1,
        "falsePositives": 1,
        "falseNegatives": 1,
    }
    assert at["perLabel"]["b"] == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "support": 1,
        "truePositives": 1,
        "falsePositives": 0,
        "falseNegatives": 0,
    }
    assert (at["perLabel"]["c"]["precision"], at["perLabel"]["c"]["recall"]) == (0.0, 0.0)
    # micro: tp 2, fp 1, fn 2
    assert at["micro"] == pytest.approx({"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7})
    assert at["macro"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # @1: image 3's best score .4 is below the threshold, so it predicts nothing
    assert (at["precisionAt1"], at["recallAt1"]) == pytest.approx((2 / 3, 0.5))


def test_threshold_sweep_ends(single: dict[str, Any]) -> None:
    sweep = single["thresholdSweep"]
    assert [point["threshold"] for point in sweep] == list(SWEEP_THRESHOLDS)
    assert tuple(round(0.05 * i, 2) for i in range(21)) == SWEEP_THRESHOLDS
    # at 0 every label of every image is predicted: tp 4, fp 8
    assert sweep[0] == pytest.approx(
        {
            "threshold": 0.0,
            "precision": 1 / 3,
            "recall": 1.0,
            "f1": 0.5,
            "precisionAt1": 0.5,
            "recallAt1": 0.5,
            "f1At1": 0.5,
        }
    )
    # at 1 nothing is predicted: every ratio is 0
    assert {key: value for key, value in sweep[-1].items() if key != "threshold"} == dict.fromkeys(
        ("precision", "recall", "f1", "precisionAt1", "recallAt1", "f1At1"), 0.0
    )
    assert sweep[10] == pytest.approx(
        {"threshold": 0.5, **single["atThreshold"]["micro"], "precisionAt1": 2 / 3, "recallAt1": 0.5, "f1At1": 4 / 7}
    )


def test_average_precision_per_label_and_micro(single: dict[str, Any]) -> None:
    # a: ranking .7+ .5- .3+ .1-  ->  .5 * 1 + .5 * 2/3
    assert single["averagePrecision"]["perLabel"] == pytest.approx({"a": 5 / 6, "b": 1.0, "c": 1.0})
    assert single["averagePrecision"]["macro"] == pytest.approx((5 / 6 + 2) / 3)
    # all twelve pairs: recall steps of .25 at precision 1, 1, 3/5 (tie at .4), 1/2
    assert single["averagePrecision"]["micro"] == pytest.approx(0.775)
    curve = single["precisionRecallCurves"]["micro"]
    assert curve["recall"][0] == 1.0
    assert curve["precision"][-1] == 1.0
    assert set(single["precisionRecallCurves"]["perLabel"]) == {"a", "b", "c"}


def test_most_confident_mistakes_come_first(single: dict[str, Any]) -> None:
    assert single["mostConfidentMistakes"] == [
        {"uri": "s3://b/2.png", "trueLabels": ["c"], "predictedLabel": "a", "score": pytest.approx(0.5)},
        {"uri": "s3://b/3.png", "trueLabels": ["a"], "predictedLabel": "b", "score": pytest.approx(0.4)},
    ]
    assert evaluate_predictions(SINGLE, top_mistakes=1)["mostConfidentMistakes"][0]["uri"] == "s3://b/2.png"


def test_a_higher_threshold_changes_only_threshold_metrics(single: dict[str, Any]) -> None:
    higher = evaluate_predictions(SINGLE, score_threshold=0.65)

    # only image 0's a (.7) is predicted
    assert higher["atThreshold"]["micro"] == pytest.approx({"precision": 1.0, "recall": 0.25, "f1": 0.4})
    assert higher["scoreThreshold"] == 0.65
    for unchanged in ("accuracy", "logLoss", "averagePrecision", "confusionMatrix", "thresholdSweep"):
        assert higher[unchanged] == single[unchanged], unchanged


def test_binary_task_reports_roc_auc() -> None:
    # positive-class scores .1 .4 .35 .8 for truths neg neg pos pos: 3 of 4 pairs ordered right
    positive = np.array([0.1, 0.4, 0.35, 0.8], dtype=np.float32)
    binary = SplitPredictions.single_label(
        ["neg", "pos"], ["0", "1", "2", "3"], np.array([0, 0, 1, 1]), np.stack([1 - positive, positive], axis=1)
    )

    roc = evaluate_predictions(binary)["rocAuc"]

    assert roc["perLabel"] == pytest.approx({"neg": 0.75, "pos": 0.75})
    assert roc["macro"] == pytest.approx(0.75)
    # pooled: positives .9 .6 .35 .8 against negatives .1 .4 .65 .2 -> 13 of 16 pairs
    assert roc["micro"] == pytest.approx(13 / 16)


def test_multi_label_task() -> None:
    evaluation = evaluate_predictions(MULTI)

    assert evaluation["task"] == "MultiLabel"
    assert evaluation["accuracy"] == pytest.approx(1 / 3), "exact match at the threshold: only image 0"
    assert evaluation["confusionMatrix"] is None
    at = evaluation["atThreshold"]
    assert at["perLabel"]["x"]["precision"] == 0.5
    assert at["perLabel"]["y"]["recall"] == 0.5
    assert at["micro"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    assert evaluation["rocAuc"]["perLabel"] == {"x": 1.0, "y": 1.0}
    # pooled: positives .9 .6 .4, negatives .2 .6 .1; the .6 tie counts half -> 7.5 of 9
    assert evaluation["rocAuc"]["micro"] == pytest.approx(7.5 / 9)
    bce = [math.log(0.9), math.log(0.6), math.log(0.8), math.log(0.4), math.log(0.4), math.log(0.9)]
    assert evaluation["logLoss"] == pytest.approx(-sum(bce) / 6)
    assert evaluation["mostConfidentMistakes"] == [
        {"uri": "u2", "trueLabels": [], "predictedLabel": "x", "score": pytest.approx(0.6)}
    ]
    with pytest.raises(ValueError, match="no confusion matrix"):
        confusion_matrix_csv(evaluation)


def test_label_without_positives_has_no_average_precision() -> None:
    predictions = SplitPredictions.single_label(
        ["a", "b", "never"],
        ["0", "1"],
        np.array([0, 1]),
        np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1]], dtype=np.float32),
    )

    precision = evaluate_predictions(predictions)["averagePrecision"]

    assert precision["perLabel"] == {"a": 1.0, "b": 1.0, "never": None}
    assert precision["macro"] == 1.0
    assert evaluate_predictions(predictions)["precisionRecallCurves"]["perLabel"]["never"] is None


def test_variant_metrics_compare_another_build() -> None:
    flipped = SINGLE.scores[:, [1, 0, 2]]  # swaps a and b: every top-1 changes, only image 3 becomes right

    assert variant_metrics(SINGLE, SINGLE.scores) == {"accuracy": 0.5, "top1Agreement": 1.0}
    assert variant_metrics(SINGLE, flipped) == {"accuracy": 0.25, "top1Agreement": 0.0}
