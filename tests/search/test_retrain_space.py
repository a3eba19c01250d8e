"""The retraining space: the base's architecture and preprocessing always, only learning rate and epochs drawn."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.trial import FixedTrial

from autovision.preprocess import PreprocessConfig
from autovision.search.retrain_space import RetrainSpace
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.trainer import TrainConfig

BASE = TrainConfig(epochs=9, learning_rate=3e-3, ema=0.99, seed=7, architecture=ResidualCNNConfig(width=24))
PREPROCESS = PreprocessConfig(size=24, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
SPACE = RetrainSpace(BASE, PREPROCESS, "file:///runs/new/base/weights.pt", seed=3)


def test_every_trial_is_the_base_recipe_from_the_base_weights_with_its_own_learning_rate_and_epochs() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    low, high = SPACE.learning_rates()
    assert (low, high) == (3e-5, 1e-3)
    for _ in range(20):
        candidate = SPACE.suggest(study.ask())
        config = candidate.config
        assert candidate.preprocess == PREPROCESS
        assert config.initial_weights == SPACE.initial_weights
        assert low <= config.learning_rate <= high
        assert 1 <= config.epochs <= SPACE.max_epochs == BASE.epochs
        unvaried = dataclasses.replace(config, learning_rate=BASE.learning_rate, epochs=BASE.epochs, seed=BASE.seed)
        assert dataclasses.replace(unvaried, initial_weights=None) == BASE


def test_the_first_trial_is_a_short_gentle_fine_tune_and_a_small_budget_gets_a_one_epoch_one() -> None:
    first = SPACE.warm_start()
    assert first == {"learning_rate": pytest.approx(3e-4), "epochs": 3}
    assert SPACE.suggest(FixedTrial(first)).config.epochs == 3
    assert SPACE.cheaper_starts() == [{"learning_rate": pytest.approx(3e-4), "epochs": 1}]
    cheaper = SPACE.starting_with(SPACE.cheaper_starts()[0])
    assert cheaper.warm_start()["epochs"] == 1
    assert cheaper.cheaper_starts() == []
