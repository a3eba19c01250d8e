"""The search's images: cached when decoded they fit the memory budget, else streamed, and a trial learns on both."""

from __future__ import annotations

import pytest
import torch

from autovision.data.importer import import_dataset
from autovision.data.record_table import RecordTable
from autovision.preprocess import PreprocessConfig
from autovision.search.job import ImageCache
from autovision.settings import Settings
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import ImageSet
from autovision.train.streaming import StreamedImages
from autovision.train.trainer import TrainConfig, TrialCheckpoint, train_trial
from tests.support.search import digits_subset_zip


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, RecordTable]:
    folder = tmp_path_factory.mktemp("job")
    storage = Storage(f"file://{folder / 'storage'}")
    result = import_dataset(str(digits_subset_zip(folder / "digits.zip", per_class=20)), "digits", storage)
    return storage, result.records


@pytest.mark.training
def test_a_split_over_the_memory_budget_streams_and_a_trial_learns_on_it(
    digits: tuple[Storage, RecordTable],
) -> None:
    storage, records = digits

    def images(budget: int) -> ImageCache:
        settings = Settings(training_memory_bytes=budget)
        cache = ImageCache(records, tuple(records.label_set()), Storage(storage.uri(""), settings))
        return cache.on(torch.device("cpu"), decode_workers=1)  # decoded inline: tests/train runs the processes

    train = sum(record.split == "train" for record in records)
    assert isinstance(images(3 * 8 * 8 * train).training(("train",), 8), ImageSet), "fits: the cache"
    small = images(3 * 8 * 8 * train - 1)
    streamed = small.training(("train",), 8)
    assert isinstance(streamed, StreamedImages)
    assert len(streamed) == train
    final = small.training(("train", "validation"), 8)
    assert len(final) == train + small.count("validation")

    config = TrainConfig(epochs=6, batch_size=32, architecture=ResidualCNNConfig(width=8, stages=2))
    checkpoint = TrialCheckpoint(storage, "streamed.pt")
    validation = small.split("validation", 8)
    trained = train_trial(streamed, validation, config, PreprocessConfig(size=8), checkpoint=checkpoint)
    assert trained.best_score is not None
    assert trained.best_score > 0.6, "learns (chance is 0.1)"
