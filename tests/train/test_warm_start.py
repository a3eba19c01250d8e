"""Starting a trial from a finished model's weights: near the base's accuracy at once, far above a cold start."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from autovision.data.importer import import_dataset
from autovision.preprocess import PreprocessConfig
from autovision.storage import Storage
from autovision.train.families.efficientnet_lite import EfficientNetLiteConfig
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.families.user_backbone import UserBackboneConfig
from autovision.train.images import ImageSet, load_images
from autovision.train.trainer import EpochResult, TrainConfig, TrialCheckpoint, train_trial
from autovision.train.warm_start import architecture_from, initial_weights
from tests.support.search import digits_subset_zip

PREPROCESS = PreprocessConfig(size=8)
BASE = TrainConfig(epochs=6, batch_size=32, learning_rate=1e-2, architecture=ResidualCNNConfig(width=8, stages=2))


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, ImageSet, ImageSet]:
    folder = tmp_path_factory.mktemp("warm-start")
    storage = Storage(f"file://{folder / 'storage'}")
    records = import_dataset(str(digits_subset_zip(folder / "digits.zip", per_class=40)), "digits", storage).records
    labels = records.label_set()
    train, validation = (
        load_images(records.where_split(split), labels, PREPROCESS.size, storage) for split in ("train", "validation")
    )
    return storage, train, validation


def _first_score(storage: Storage, train: ImageSet, validation: ImageSet, config: TrainConfig, name: str) -> float:
    scores: list[float | None] = []

    def on_epoch(result: EpochResult) -> bool:
        scores.append(result.validation_score)
        return True  # the first evaluation is all this test asks of a trial

    checkpoint = TrialCheckpoint(storage, f"trials/{name}/checkpoint.pt")
    train_trial(train, validation, config, PREPROCESS, checkpoint=checkpoint, on_epoch=on_epoch)
    assert scores[0] is not None
    return scores[0]


def test_a_warm_started_trial_starts_near_its_base_and_far_above_a_cold_start(
    digits: tuple[Storage, ImageSet, ImageSet],
) -> None:
    storage, train, validation = digits
    base = train_trial(train, validation, BASE, PREPROCESS, checkpoint=TrialCheckpoint(storage, "base/checkpoint.pt"))
    assert base.best_score is not None
    assert base.best_score > 0.8
    buffer = io.BytesIO()
    torch.save(base.model.state_dict(), buffer)
    storage.write_bytes("base/weights.pt", buffer.getvalue())
    retrain = TrainConfig(epochs=2, batch_size=32, learning_rate=3e-4, architecture=BASE.architecture)

    warm = TrainConfig(**{**retrain.__dict__, "initial_weights": storage.uri("base/weights.pt")})
    warm_score = _first_score(storage, train, validation, warm, "warm")
    cold_score = _first_score(storage, train, validation, retrain, "cold")

    assert warm_score >= base.best_score - 0.05, (warm_score, base.best_score)
    assert warm_score >= cold_score + 0.4, (warm_score, cold_score)


def test_initial_weights_are_read_once_per_process(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path}")
    storage.write_bytes("w.pt", _saved({"x": torch.ones(2)}))
    first = initial_weights(storage.uri("w.pt"))
    storage.write_bytes("w.pt", _saved({"x": torch.zeros(2)}))
    assert initial_weights(storage.uri("w.pt")) is first


def _saved(state: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "architecture",
    [
        ResidualCNNConfig(width=24, stages=2, kernel=5, head="mlp", dropout=0.3),
        EfficientNetLiteConfig(variant=1, frozen_stages=2),
        UserBackboneConfig("mine", "resnet18", "file:///weights.pt", frozen_stages=1),
    ],
)
def test_every_family_rebuilds_its_architecture_from_a_model_card(architecture: object) -> None:
    description = architecture.describe()  # type: ignore[attr-defined]
    assert architecture_from(description) == architecture
    with pytest.raises(ValueError, match="cannot rebuild"):
        architecture_from({**description, "unknown_field": 1})
