"""Model families behind one interface: a family defined here, registered, searched, exported and restored.

The toy family is a linear classifier on the raw pixels, so a search over the
bundled digits at their own 8 px takes seconds. Nothing outside this file knows
it: the search space, the model builder and checkpoint restore find it through
the registry alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import BaseTrial, FixedTrial
from torch import nn

from autovision.contract.keys import RunLocation, final_checkpoint_key
from autovision.data.importer import import_dataset
from autovision.export import onnx_logits
from autovision.pipeline import train_evaluate_export
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.progress import LogReporter
from autovision.search.job import SearchSettings
from autovision.search.space import LEARNING_RATES, DatasetProfile, SearchSpace, space_for
from autovision.storage import Storage, read_uris
from autovision.train.families import families, family_describing, family_named, family_of, register_family, registered
from autovision.train.families.base import ModelFamily, Stage
from autovision.train.families.efficientnet_lite import EfficientNetLiteConfig
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.families.user_backbone import UserBackboneConfig
from autovision.train.models import build_model
from autovision.train.trainer import TrainConfig, TrialCheckpoint, restore_model

TOY = "toy"


@dataclass(frozen=True)
class ToyConfig:
    """A linear classifier on the flattened pixels of ``size`` px images."""

    size: int = 8
    dropout: float = 0.0

    @property
    def family(self) -> str:
        return TOY

    def describe(self) -> dict[str, object]:
        return {"family": self.family, **asdict(self)}


class ToyFamily(ModelFamily[ToyConfig]):
    """Draws its resolution and dropout; nothing pretrained, so the default restore applies."""

    name = TOY
    config_type = ToyConfig

    def warm_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        return {"toy.resolution": space.resolutions((8, 12))[0], "toy.dropout": 0.0}

    def suggest(self, trial: BaseTrial, choice: str, space: SearchSpace) -> tuple[ToyConfig, PreprocessConfig]:
        size = int(trial.suggest_categorical("toy.resolution", space.resolutions((8, 12))))
        dropout = trial.suggest_float("toy.dropout", 0.0, 0.3)
        return ToyConfig(size=size, dropout=dropout), PreprocessConfig(size=size)

    def build(self, config: ToyConfig, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(3 * config.size**2, num_classes))

    def last_conv_stage(self, model: nn.Module) -> tuple[Stage, Stage]:
        return nn.Identity(), model  # no convolution: Grad-CAM reads the input itself


@pytest.fixture
def toy() -> Iterator[ToyFamily]:
    with registered(ToyFamily()) as family:
        yield family


def toy_space(**fields: Any) -> SearchSpace:
    """A space of the toy family alone: none of the built-in families' choices."""
    return SearchSpace(families=(TOY,), cnn_resolutions=(), lite_resolutions={}, **fields)


def test_the_built_in_families_are_registered_in_the_order_a_dataset_offers_them() -> None:
    assert [family.name for family in families()] == ["efficientnet_lite", "residual_cnn", "user_backbone"]
    mine = UserBackboneConfig("mine", "resnet18", "file:///w/r18.pth")
    space = SearchSpace(families=(), cnn_resolutions=(), lite_resolutions={}, backbones=(mine,))
    choices = ("residual_cnn", "efficientnet_lite2", "mine")
    assert [family_named(choice, space).name for choice in choices] == [
        "residual_cnn",
        "efficientnet_lite",
        "user_backbone",
    ]
    configs = (ResidualCNNConfig(), EfficientNetLiteConfig(), mine)
    assert [family_of(config).name for config in configs] == ["residual_cnn", "efficientnet_lite", "user_backbone"]
    with pytest.raises(ValueError, match="no registered model family serves 'yours'"):
        family_named("yours", space)
    assert [family_describing(config.describe()).name for config in configs] == [
        "residual_cnn",
        "efficientnet_lite",
        "user_backbone",
    ]


def test_a_registered_family_is_searched_only_where_a_space_names_it(toy: ToyFamily) -> None:
    profile = DatasetProfile(train_images=100, median_side=8, labels=3, multi_label=False)
    assert TOY not in space_for(profile).families, "a family joins dataset spaces only through its offer()"
    space = toy_space(preprocess=PreprocessConfig(size=10))
    warm = space.suggest(FixedTrial(space.warm_start()))
    assert (warm.config.architecture, warm.preprocess, warm.architecture) == (ToyConfig(size=10), space.preprocess, TOY)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    candidates = [toy_space().suggest(study.ask()) for _ in range(20)]
    assert {candidate.preprocess.size for candidate in candidates} == {8, 12}
    for candidate in candidates:
        architecture = candidate.config.architecture
        assert isinstance(architecture, ToyConfig)
        assert architecture.size == candidate.preprocess.size
        low, high = LEARNING_RATES[candidate.config.optimizer][False]  # not fine-tuned: the from-scratch range
        assert low <= candidate.config.learning_rate <= high
    assert [type(layer) for layer in build_model(ToyConfig(size=12), 4).children()] == [
        nn.Flatten,
        nn.Dropout,
        nn.Linear,
    ]


def test_a_family_is_registered_once_and_gone_after_its_block() -> None:
    with registered(ToyFamily()):
        with pytest.raises(ValueError, match="'toy' is registered already"):
            register_family(ToyFamily())
        assert family_named(TOY, toy_space()).name == TOY
    with pytest.raises(ValueError, match="no registered model family serves 'toy'"):
        family_named(TOY, toy_space())
    with pytest.raises(ValueError, match="no registered model family builds ToyConfig"):
        build_model(ToyConfig(), 3)


@pytest.mark.training
def test_a_search_of_a_new_family_trains_exports_and_restores_it(
    toy: ToyFamily, file_storage: Storage, digits_zip: Path
) -> None:
    dataset = import_dataset(str(digits_zip), "digits", file_storage)
    run = RunLocation("ns", "toy", "u1")
    settings = SearchSettings(space=toy_space(epochs=(1, 2), batch_size=32), max_trials=2, early_stopping=False)

    card = train_evaluate_export(file_storage, "digits", dataset.version, run, LogReporter(), search=settings)

    assert [trial["architecture"] for trial in card.search["trials"]] == [TOY, TOY]
    assert card.architecture["family"] == TOY
    assert card.parity["onnx"]["top1Identical"]
    assert card.parity["onnx"]["maxAbsDiff"] <= card.parity["onnx"]["tolerance"]
    assert card.final_fit.retrained is True
    architecture = ToyConfig(**{key: value for key, value in card.architecture.items() if key != "family"})
    checkpoint = TrialCheckpoint(file_storage, final_checkpoint_key(run.prefix))
    restored = restore_model(TrainConfig(architecture=architecture), len(card.labels), checkpoint)
    test_uris = [record.uri for record in dataset.records if record.split == "test"]
    images = preprocess_batch(read_uris(test_uris, file_storage.settings), PreprocessConfig(size=architecture.size))
    with torch.inference_mode():
        eager = restored(torch.from_numpy(images)).numpy()
    exported = onnx_logits(file_storage.read_bytes(f"{run.prefix}/model/model.onnx"), images)
    np.testing.assert_allclose(eager, exported, atol=1e-4)
