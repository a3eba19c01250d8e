"""The final model's scores on the test split: what evaluation and the saved predictions are computed from."""

from __future__ import annotations

from autovision.evaluate.metrics import activate
from autovision.evaluate.predictions import SplitPredictions
from autovision.preprocess import PreprocessConfig
from autovision.search.final import FinalModel
from autovision.train.images import ImageSet
from autovision.train.trainer import image_logits


def score_test_split(
    final: FinalModel, test: ImageSet, labels: list[str], preprocess: PreprocessConfig, multi_label: bool
) -> SplitPredictions:
    """The final model's scores on every test image, with their URIs and true labels."""
    scores = activate(image_logits(final.model, test, preprocess), multi_label)
    return SplitPredictions(labels=labels, uris=test.uris, truth=test.truth(), scores=scores, multi_label=multi_label)
