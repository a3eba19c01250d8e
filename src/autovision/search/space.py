"""What a dataset's trials may be: architectures and hyperparameters (pure: no I/O, no training).

Small images (median short side up to 64 px: digits, CIFAR-10) search the
from-scratch residual CNN family, since ImageNet features help little there;
larger images search EfficientNet-Lite0/1/2 fine-tuned from ImageNet, plus the
CNN family at low resolution. Backbones the user brings (torchvision ResNets with
their own weights) are fine-tuned like Lite, on images of any size: the user
asked for them. Every trial also draws its input resolution, optimiser,
schedule, regularisation, augmentation and epochs.

Optuna's samplers propose the values (``suggest`` is define-by-run, so each
family has its own parameters); the first trial is a known-good configuration
(``warm_start``), so even a budget that affords one trial yields a sound model.
What is particular to a family (its parameters, preprocessing, warm start and
whether it suits a dataset) is the family's own (``autovision.train.families``):
this module draws the family and the parameters every trial shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from optuna.trial import BaseTrial

from autovision.data.record_table import RecordTable
from autovision.preprocess import PreprocessConfig
from autovision.train.families import families, family_named
from autovision.train.families.base import closest
from autovision.train.families.user_backbone import BACKBONE_FROZEN_STAGES, BACKBONE_RESOLUTIONS, UserBackboneConfig
from autovision.train.trainer import TrainConfig

SMALL_IMAGE_SIDE = 64
# Learning-rate and weight-decay ranges per optimiser: (from scratch, fine-tuning).
LEARNING_RATES = {"adamw": ((5e-4, 1e-2), (1e-4, 3e-3)), "sgd": ((1e-2, 0.3), (3e-3, 0.1))}
WEIGHT_DECAYS = {"adamw": (1e-3, 0.1), "sgd": (1e-5, 1e-3)}
EMA_CHOICES = (0.0, 0.99, 0.999)
MIX_CHOICES = (0.0, 0.2, 1.0)
# Epochs a trial may run: small images from scratch, or larger ones (mostly fine-tuned).
SMALL_IMAGE_EPOCHS = (4, 30)
LARGE_IMAGE_EPOCHS = (3, 20)


@dataclass(frozen=True)
class DatasetProfile:
    """The facts about a dataset that shape its search space."""

    train_images: int
    median_side: int
    labels: int
    multi_label: bool

    @classmethod
    def of(cls, records: RecordTable, labels: Sequence[str], multi_label: bool) -> DatasetProfile:
        """Profile the training split of a dataset version (from its columns)."""
        sides = records.where_split("train").short_sides()
        median = int(np.median(sides)) if len(sides) else 0  # a median of ints, as statistics.median's
        return cls(len(sides), median, len(labels), multi_label)

    @property
    def small_images(self) -> bool:
        """Whether images are small enough that training from scratch is the better bet."""
        return self.median_side <= SMALL_IMAGE_SIDE


@dataclass(frozen=True)
class Candidate:
    """One trial's full recipe: training configuration and the preprocessing that sizes its input."""

    config: TrainConfig
    preprocess: PreprocessConfig

    @property
    def architecture(self) -> str:
        """The family name, e.g. residual_cnn or efficientnet_lite0."""
        return self.config.architecture.family

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the configuration and the preprocessing."""
        return {"training": self.config.describe(), "preprocess": self.preprocess.to_json()}


class Space(Protocol):
    """Where trials come from: a search space, or one fixed configuration."""

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial runs (the pruner's maximum resource)."""
        ...

    @property
    def max_trials(self) -> int | None:
        """A cap on the number of trials, if the space itself has one."""
        ...

    @property
    def backbones(self) -> tuple[UserBackboneConfig, ...]:
        """The user backbones trials may build on: their weights are checked before the search starts."""
        ...

    def warm_start(self) -> dict[str, Any] | None:
        """The parameters of the first trial, if any."""
        ...

    def cheaper_starts(self) -> list[dict[str, Any]]:
        """First trials for a budget the warm start does not fit, most preferred first (maybe none)."""
        ...

    def starting_with(self, first_trial: dict[str, Any]) -> Space:
        """This space, its first trial replaced (one of ``cheaper_starts``)."""
        ...

    def suggest(self, trial: BaseTrial) -> Candidate:
        """The candidate a trial stands for, drawing its parameters from the trial."""
        ...


@dataclass(frozen=True)
class FixedSpace:
    """A single, given configuration: the search degenerates to one trial without parameters."""

    candidate: Candidate

    @property
    def max_epochs(self) -> int:
        """The configuration's epochs."""
        return self.candidate.config.epochs

    @property
    def max_trials(self) -> int | None:
        """Exactly one trial."""
        return 1

    @property
    def backbones(self) -> tuple[UserBackboneConfig, ...]:
        """The configuration's backbone, when it is a user's."""
        architecture = self.candidate.config.architecture
        return (architecture,) if isinstance(architecture, UserBackboneConfig) else ()

    def warm_start(self) -> dict[str, Any] | None:
        """Nothing to enqueue: the trial has no parameters."""
        return None

    def cheaper_starts(self) -> list[dict[str, Any]]:
        """None: the configuration is the user's."""
        return []

    def starting_with(self, first_trial: dict[str, Any]) -> FixedSpace:
        """Itself: there is nothing else to start with."""
        return self

    def suggest(self, trial: BaseTrial) -> Candidate:
        """Always the given candidate."""
        return self.candidate


@dataclass(frozen=True)
class SearchSpace:
    """Architectures and hyperparameters for one dataset; ``suggest`` draws a candidate from a trial.

    ``preprocess`` pins resolution and normalisation for every family when given
    (a caller that fixed its preprocessing); otherwise each family uses its own.
    ``backbones`` define the families named after them (each name listed in ``families``).
    ``cnn_resolutions`` to ``stem_strides`` are the built-in families' choices (their
    modules in ``autovision.train.families`` read them); ``epochs`` on apply to every trial.
    ``first_trial`` replaces the warm start when a small budget chose a cheaper one.
    """

    families: tuple[str, ...]
    cnn_resolutions: tuple[int, ...]
    lite_resolutions: dict[int, tuple[int, ...]]
    backbones: tuple[UserBackboneConfig, ...] = ()
    backbone_resolutions: tuple[int, ...] = BACKBONE_RESOLUTIONS
    backbone_frozen_stages: tuple[int, ...] = BACKBONE_FROZEN_STAGES
    widths: tuple[int, ...] = (16, 24, 32, 48)
    stage_counts: tuple[int, ...] = (2, 3, 4)
    depths: tuple[int, ...] = (1, 2)
    kernels: tuple[int, ...] = (3, 5)
    stem_strides: tuple[int, ...] = (1, 2)
    epochs: tuple[int, int] = SMALL_IMAGE_EPOCHS
    batch_size: int = 64
    seed: int = 0
    preprocess: PreprocessConfig | None = None
    first_trial: dict[str, Any] | None = None

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial may run."""
        return self.epochs[1]

    @property
    def max_trials(self) -> int | None:
        """No cap: the budget and early stopping end the search."""
        return None

    def resolutions(self, offered: tuple[int, ...]) -> tuple[int, ...]:
        """A family's offered input resolutions, or the pinned one when the preprocessing is fixed."""
        return (self.preprocess.size,) if self.preprocess else offered

    def warm_start(self) -> dict[str, Any]:
        """A configuration that is good on most data of its kind, tried first: the first family's recipe
        (unless ``first_trial`` replaced it)."""
        if self.first_trial is not None:
            return self.first_trial
        choice = self.families[0]
        family = family_named(choice, self)
        return self._recipe(choice, family.fine_tuned, 8 if family.fine_tuned else 12) | family.warm_start(choice, self)

    def cheaper_starts(self) -> list[dict[str, Any]]:
        """Each family's cheapest configuration with the recipe's training and the fewest epochs, in the
        space's order of families (the order of preference)."""
        starts = []
        for choice in self.families:
            family = family_named(choice, self)
            starts.append(self._recipe(choice, family.fine_tuned, 1) | family.cheapest_start(choice, self))
        return starts

    def starting_with(self, first_trial: dict[str, Any]) -> SearchSpace:
        """This space with ``first_trial`` as the study's first trial."""
        return replace(self, first_trial=first_trial)

    def _recipe(self, choice: str, fine_tuning: bool, epochs: int) -> dict[str, Any]:
        """The parameters every family shares, as the known-good recipe sets them."""
        return {
            "family": choice,
            "optimizer": "adamw",
            "adamw.learning_rate": 1e-3 if fine_tuning else 3e-3,
            "adamw.weight_decay": 0.02,
            "schedule": "cosine",
            "label_smoothing": 0.1 if fine_tuning else 0.05,
            "augment": 0.3 if fine_tuning else 0.0,
            "flip": fine_tuning,
            "mixup": 0.0,
            "cutmix": 0.0,
            "ema": 0.0,
            "head": "linear",
            "dropout": 0.2 if fine_tuning else 0.1,
            "epochs": closest(range(self.epochs[0], self.epochs[1] + 1), epochs),
        }

    def suggest(self, trial: BaseTrial) -> Candidate:
        """Draw a candidate: the family first, then its own and the shared parameters."""
        choice = str(trial.suggest_categorical("family", self.families))
        family = family_named(choice, self)
        architecture, preprocess = family.suggest(trial, choice, self)
        optimizer = str(trial.suggest_categorical("optimizer", ("adamw", "sgd")))
        config = TrainConfig(
            epochs=trial.suggest_int("epochs", *self.epochs, log=True),
            batch_size=self.batch_size,
            optimizer="sgd" if optimizer == "sgd" else "adamw",
            learning_rate=trial.suggest_float(
                f"{optimizer}.learning_rate", *LEARNING_RATES[optimizer][family.fine_tuned], log=True
            ),
            weight_decay=trial.suggest_float(f"{optimizer}.weight_decay", *WEIGHT_DECAYS[optimizer], log=True),
            schedule="linear" if trial.suggest_categorical("schedule", ("cosine", "linear")) == "linear" else "cosine",
            label_smoothing=trial.suggest_float("label_smoothing", 0.0, 0.2),
            augment=trial.suggest_float("augment", 0.0, 1.0),
            flip=bool(trial.suggest_categorical("flip", (False, True))),
            mixup=float(trial.suggest_categorical("mixup", MIX_CHOICES)),
            cutmix=float(trial.suggest_categorical("cutmix", MIX_CHOICES)),
            ema=float(trial.suggest_categorical("ema", EMA_CHOICES)),
            seed=self.seed,
            architecture=architecture,
        )
        return Candidate(config, self.preprocess or preprocess)


def space_for(
    profile: DatasetProfile,
    *,
    seed: int = 0,
    preprocess: PreprocessConfig | None = None,
    backbones: Sequence[UserBackboneConfig] = (),
) -> SearchSpace:
    """The search space for a dataset: each registered family joins it where it suits the data, in order.

    Small images search CNNs from scratch; larger ones the Lite backbones first
    (only the variants whose weights package is installed: nothing is ever
    downloaded), then CNNs at low resolution. The user's backbones come last, so
    the warm start stays the known-good recipe of the dataset's kind.
    """
    space = SearchSpace(
        families=(),
        cnn_resolutions=(),
        lite_resolutions={},
        backbones=tuple(backbones),
        epochs=SMALL_IMAGE_EPOCHS if profile.small_images else LARGE_IMAGE_EPOCHS,
        seed=seed,
        preprocess=preprocess,
    )
    for family in families():
        space = family.offer(space, profile)
    return space
