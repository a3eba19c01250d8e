"""Scoring a split: batch by batch within a memory budget, so the peak does not grow with the split."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from autovision.data.versions import open_version
from autovision.evaluate.scoring import score_split
from autovision.evaluate.split_images import BYTES_PER_PIXEL, SplitImages, batch_images
from autovision.preprocess import PreprocessConfig
from autovision.storage import Storage
from autovision.train.images import load_images
from tests.support.memory import BUDGET_BYTES, LABELS, ScaleDatasets, assert_bounded, peaks, version_args


def test_scores_in_batches_equal_the_scores_of_the_whole_split(scale_datasets: ScaleDatasets) -> None:
    storage = Storage(scale_datasets.storage_root)
    index = open_version(storage, "scale-2000", scale_datasets.versions[2000])
    whole = SplitImages(index, "test", list(LABELS), 16, storage, workers=1)
    small = dataclasses.replace(whole, budget_bytes=100 * BYTES_PER_PIXEL * 16 * 16, limit=300)
    assert batch_images(16, small.budget_bytes) == 100
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, len(LABELS))).eval()
    preprocess = PreprocessConfig(size=16)

    batched = score_split(model, small, preprocess, multi_label=False)

    records = list(index.records("test"))[:300]
    expected = load_images(records, list(LABELS), 16, storage, workers=1)
    assert batched.uris == expected.uris
    assert (batched.truth == expected.truth()).all()
    logits = model(expected.inputs(preprocess)).detach().numpy()
    np.testing.assert_allclose(batched.scores, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), atol=1e-6)


def test_evaluation_peak_memory_does_not_grow_with_the_test_split(scale_datasets: ScaleDatasets) -> None:
    assert_bounded("evaluation", peaks("evaluate", version_args(scale_datasets, str(BUDGET_BYTES))))
