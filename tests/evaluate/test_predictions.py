"""Split predictions: saved without pickle, inconsistent arrays refused."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.evaluate import (
    SplitPredictions,
    evaluate_predictions,
)
from tests.support.evaluate import MULTI, SINGLE


def test_predictions_survive_npz_without_pickle() -> None:
    for predictions in (SINGLE, MULTI):
        loaded = SplitPredictions.from_npz(predictions.to_npz())
        assert loaded.labels == predictions.labels
        assert loaded.uris == predictions.uris
        assert loaded.multi_label == predictions.multi_label
        np.testing.assert_array_equal(loaded.truth, predictions.truth)
        np.testing.assert_array_equal(loaded.scores, predictions.scores)


def test_inconsistent_predictions_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(images, labels\) = \(2, 2\)"):
        SplitPredictions(["a", "b"], ["0", "1"], np.ones((2, 3), bool), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="exactly one true label"):
        SplitPredictions(["a", "b"], ["0"], np.ones((1, 2), bool), np.ones((1, 2), np.float32))
    with pytest.raises(ValueError, match="no images"):
        evaluate_predictions(SplitPredictions(["a"], [], np.ones((0, 1), bool), np.ones((0, 1), np.float32)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_predictions(SINGLE, score_threshold=1.5)
