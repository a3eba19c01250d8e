"""Heatmaps for the report: where the final model looked on its most confident mistakes and on a few correct
test images per label, and the record of them in evaluation.json.

Each chosen image is explained for the label the model gave it (for a mistake:
why it said that). The overlays go into report.html only; evaluation.json keeps
the method, its settings and each image's coarse grid.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from autovision.contract.files import EvaluationExplanations, ExplainedImage
from autovision.evaluate.predictions import SplitPredictions
from autovision.explain.base import ExplainSettings
from autovision.explain.methods import attribute, explained_model
from autovision.explain.render import attribution_grid, overlay_png
from autovision.preprocess import PreprocessConfig
from autovision.train.images import normalise

# Correct test images explained per label (the highest-scoring ones).
CORRECT_PER_LABEL = 2
# Images explained in one pass: bounds the memory of integrated gradients' steps.
EXPLAIN_BATCH = 16
# The report's method: Grad-CAM costs one backward pass an image, so every run can afford it.
REPORT_SETTINGS = ExplainSettings("grad_cam")


@dataclass(frozen=True)
class ReportExplanations:
    """What evaluation.json records and the overlays (PNG data URIs by image URI) report.html shows."""

    record: EvaluationExplanations
    overlays: dict[str, str]


def chosen_images(predictions: SplitPredictions, mistakes: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """Indices of the images to explain with their kind: the listed mistakes, then the ``CORRECT_PER_LABEL``
    highest-scoring correct images of each label (by top-1 label)."""
    index = {uri: position for position, uri in enumerate(predictions.uris)}
    chosen = [(index[mistake["uri"]], "mistake") for mistake in mistakes if mistake["uri"] in index]
    rows = np.arange(len(predictions.uris))
    top1 = predictions.top1
    correct = predictions.truth[rows, top1]
    scores = predictions.scores[rows, top1]
    for label in range(len(predictions.labels)):
        candidates = np.flatnonzero(correct & (top1 == label))
        best = candidates[np.argsort(-scores[candidates], kind="stable")][:CORRECT_PER_LABEL]
        chosen.extend((int(position), "correct") for position in best)
    return chosen


def explain_test_images(
    model: nn.Module,
    architecture: dict[str, object],
    pixels_of: Callable[[list[str]], torch.Tensor],
    predictions: SplitPredictions,
    mistakes: list[dict[str, Any]],
    *,
    preprocess: PreprocessConfig,
    settings: ExplainSettings = REPORT_SETTINGS,
) -> ReportExplanations:
    """Explain the chosen test images (see ``chosen_images``) with ``settings``, for their top-1 label.

    ``pixels_of`` gives the uint8 pixels of the images with these URIs (``SplitImages.pixels_of``): only the
    few explained images are read, never the split."""
    chosen = chosen_images(predictions, mistakes)
    split = explained_model(model.eval(), architecture)
    top1 = predictions.top1
    images: list[ExplainedImage] = []
    overlays: dict[str, str] = {}
    for start in range(0, len(chosen), EXPLAIN_BATCH):
        batch = chosen[start : start + EXPLAIN_BATCH]
        positions = torch.tensor([position for position, _ in batch])
        pixels = pixels_of([predictions.uris[position] for position, _ in batch]).cpu()
        targets = torch.from_numpy(top1[positions.numpy()])
        maps = attribute(split, normalise(pixels, preprocess), targets, settings, num_classes=len(predictions.labels))
        for (position, kind), image_pixels, attribution in zip(batch, pixels, maps, strict=True):
            uri = predictions.uris[position]
            png = overlay_png(image_pixels.permute(1, 2, 0).numpy(), attribution)
            overlays[uri] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            label = int(top1[position])
            images.append(
                ExplainedImage(
                    uri=uri,
                    kind=kind,
                    label=predictions.labels[label],
                    score=float(predictions.scores[position, label]),
                    grid=attribution_grid(attribution, settings.grid),
                )
            )
    record = EvaluationExplanations(method=settings.method, settings=settings.describe(), images=images)
    return ReportExplanations(record=record, overlays=overlays)
