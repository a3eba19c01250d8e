"""The final model's scores on the test split: what evaluation and the saved predictions are computed from."""

from __future__ import annotations

import numpy as np
from torch import nn

from autovision.evaluate.metrics import activate
from autovision.evaluate.predictions import SplitPredictions
from autovision.evaluate.split_images import SplitImages
from autovision.preprocess import PreprocessConfig
from autovision.train.trainer import image_logits


def score_split(
    model: nn.Module, images: SplitImages, preprocess: PreprocessConfig, multi_label: bool
) -> SplitPredictions:
    """The model's scores on every image of a split, with their URIs and true labels, decoded one batch at a
    time: only the per-image scores, truth and URIs outlive a batch."""
    uris: list[str] = []
    truth, scores = [], []
    for batch in images.batches():
        uris.extend(batch.uris)
        truth.append(batch.truth())
        scores.append(activate(image_logits(model, batch, preprocess), multi_label))
    labels = images.labels
    return SplitPredictions(
        labels=labels,
        uris=uris,
        truth=np.concatenate(truth) if truth else np.zeros((0, len(labels)), dtype=np.bool_),
        scores=np.concatenate(scores) if scores else np.zeros((0, len(labels)), dtype=np.float32),
        multi_label=multi_label,
    )
