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
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from optuna.trial import BaseTrial

from autovision.data.manifest import ImageRecord
from autovision.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from autovision.train.models import (
    LITE_MEAN,
    LITE_RESOLUTIONS,
    LITE_STD,
    ArchitectureConfig,
    EfficientNetLiteConfig,
    HeadKind,
    ResidualCNNConfig,
    UserBackboneConfig,
    lite_weights_installed,
)
from autovision.train.trainer import TrainConfig

SMALL_IMAGE_SIDE = 64
CNN = "residual_cnn"
LITE_FAMILIES = {f"efficientnet_lite{variant}": variant for variant in LITE_RESOLUTIONS}
# Resolutions offered to the CNN family: small images go up to twice their size (or 32 px),
# larger ones are only ever seen downscaled by it.
SMALL_CNN_RESOLUTIONS = (16, 24, 32, 48, 64)
LARGE_CNN_RESOLUTIONS = (64, 96, 128)
# Fine-tuning resolutions per Lite variant, up to the one it was trained at.
LITE_TRIAL_RESOLUTIONS = {0: (160, 192, 224), 1: (192, 240), 2: (224, 260)}
FROZEN_STAGE_CHOICES = (0, 2, 4, 6)
# User backbones (torchvision ResNets, trained at 224 px; normalised as torchvision does): up to
# that resolution; frozen up to the stem, then through layer1, layer2 or layer3 (of four).
BACKBONE_RESOLUTIONS = (160, 192, 224)
BACKBONE_FROZEN_STAGES = (0, 2, 3, 4)
# Learning-rate and weight-decay ranges per optimiser: (from scratch, fine-tuning).
LEARNING_RATES = {"adamw": ((5e-4, 1e-2), (1e-4, 3e-3)), "sgd": ((1e-2, 0.3), (3e-3, 0.1))}
WEIGHT_DECAYS = {"adamw": (1e-3, 0.1), "sgd": (1e-5, 1e-3)}
EMA_CHOICES = (0.0, 0.99, 0.999)
# Below this input size a stride-2 stem leaves too little resolution for the stages after it.
MIN_STEM_DOWNSAMPLING_SIZE = 32
MIX_CHOICES = (0.0, 0.2, 1.0)

T = TypeVar("T", int, float)


@dataclass(frozen=True)
class DatasetProfile:
    """The facts about a dataset that shape its search space."""

    train_images: int
    median_side: int
    labels: int
    multi_label: bool

    @classmethod
    def of(cls, records: Sequence[ImageRecord], labels: Sequence[str], multi_label: bool) -> DatasetProfile:
        """Profile the training split of a dataset version."""
        train = [record for record in records if record.split == "train"]
        sides = [min(record.width, record.height) for record in train] or [0]
        return cls(len(train), int(statistics.median(sides)), len(labels), multi_label)

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

    def suggest(self, trial: BaseTrial) -> Candidate:
        """Always the given candidate."""
        return self.candidate


def _closest(choices: Sequence[T], target: T) -> T:
    return min(choices, key=lambda choice: (abs(choice - target), choice))


@dataclass(frozen=True)
class SearchSpace:
    """Architectures and hyperparameters for one dataset; ``suggest`` draws a candidate from a trial.

    ``preprocess`` pins resolution and normalisation for every family when given
    (a caller that fixed its preprocessing); otherwise each family uses its own.
    ``backbones`` define the families named after them (each name listed in ``families``).
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
    epochs: tuple[int, int] = (4, 30)
    batch_size: int = 64
    seed: int = 0
    preprocess: PreprocessConfig | None = None

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial may run."""
        return self.epochs[1]

    @property
    def max_trials(self) -> int | None:
        """No cap: the budget and early stopping end the search."""
        return None

    def warm_start(self) -> dict[str, Any]:
        """A configuration that is good on most data of its kind, tried first."""
        family = self.families[0]
        fine_tuning = self._fine_tuned(family)
        common = {
            "family": family,
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
            "epochs": _closest(range(self.epochs[0], self.epochs[1] + 1), 8 if fine_tuning else 12),
        }
        if fine_tuning:
            resolutions, frozen_stages = self._pretrained_choices(family)
            return common | {
                f"{family}.resolution": resolutions[-1],
                f"{family}.frozen_stages": _closest(frozen_stages, 0),
            }
        size = _closest(self._cnn_resolutions(), 32)
        stem = {"stem_stride": min(self.stem_strides)} if size >= MIN_STEM_DOWNSAMPLING_SIZE else {}
        return (
            common
            | stem
            | {
                f"{CNN}.resolution": size,
                "width": _closest(self.widths, 16),
                "stages": _closest(self.stage_counts, 3),
                "depth": _closest(self.depths, 1),
                "kernel": _closest(self.kernels, 3),
            }
        )

    def _cnn_resolutions(self) -> tuple[int, ...]:
        return (self.preprocess.size,) if self.preprocess else self.cnn_resolutions

    def _backbone(self, family: str) -> UserBackboneConfig | None:
        return next((backbone for backbone in self.backbones if backbone.name == family), None)

    def _fine_tuned(self, family: str) -> bool:
        """Whether a family starts from pretrained weights (Lite, a user backbone) rather than from scratch."""
        return family in LITE_FAMILIES or self._backbone(family) is not None

    def _pretrained_choices(self, family: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """A pretrained family's resolutions (the pinned one, if any) and frozen-stage counts."""
        pinned = (self.preprocess.size,) if self.preprocess else None
        if family in LITE_FAMILIES:
            return pinned or self.lite_resolutions[LITE_FAMILIES[family]], FROZEN_STAGE_CHOICES
        return pinned or self.backbone_resolutions, self.backbone_frozen_stages

    def suggest(self, trial: BaseTrial) -> Candidate:
        """Draw a candidate: the family first, then its own and the shared parameters."""
        family = str(trial.suggest_categorical("family", self.families))
        fine_tuning = self._fine_tuned(family)
        architecture: ArchitectureConfig
        if fine_tuning:
            architecture, preprocess = self._suggest_pretrained(trial, family)
        else:
            architecture, preprocess = self._suggest_cnn(trial)
        optimizer = str(trial.suggest_categorical("optimizer", ("adamw", "sgd")))
        config = TrainConfig(
            epochs=trial.suggest_int("epochs", *self.epochs, log=True),
            batch_size=self.batch_size,
            optimizer="sgd" if optimizer == "sgd" else "adamw",
            learning_rate=trial.suggest_float(
                f"{optimizer}.learning_rate", *LEARNING_RATES[optimizer][fine_tuning], log=True
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
        return Candidate(config, preprocess)

    def _head(self, trial: BaseTrial) -> tuple[HeadKind, float]:
        head: HeadKind = "mlp" if trial.suggest_categorical("head", ("linear", "mlp")) == "mlp" else "linear"
        return head, trial.suggest_float("dropout", 0.0, 0.5)

    def _suggest_cnn(self, trial: BaseTrial) -> tuple[ResidualCNNConfig, PreprocessConfig]:
        size = int(trial.suggest_categorical(f"{CNN}.resolution", self._cnn_resolutions()))
        head, dropout = self._head(trial)
        architecture = ResidualCNNConfig(
            width=int(trial.suggest_categorical("width", self.widths)),
            stages=int(trial.suggest_categorical("stages", self.stage_counts)),
            blocks_per_stage=int(trial.suggest_categorical("depth", self.depths)),
            kernel=int(trial.suggest_categorical("kernel", self.kernels)),
            stem_stride=self._stem_stride(trial, size),
            head=head,
            dropout=dropout,
        )
        return architecture, self.preprocess or PreprocessConfig(size=size)

    def _stem_stride(self, trial: BaseTrial, size: int) -> int:
        """A downsampling stem only where the input is large enough to afford it."""
        if size < MIN_STEM_DOWNSAMPLING_SIZE:
            return 1
        return int(trial.suggest_categorical("stem_stride", self.stem_strides))

    def _suggest_pretrained(self, trial: BaseTrial, family: str) -> tuple[ArchitectureConfig, PreprocessConfig]:
        """A Lite variant or a user backbone: resolution, head and frozen stages; the weights' own normalisation."""
        resolutions, frozen_choices = self._pretrained_choices(family)
        size = int(trial.suggest_categorical(f"{family}.resolution", resolutions))
        head, dropout = self._head(trial)
        frozen_stages = int(trial.suggest_categorical(f"{family}.frozen_stages", frozen_choices))
        backbone = self._backbone(family)
        if backbone is not None:
            user = replace(backbone, frozen_stages=frozen_stages, head=head, dropout=dropout)
            return user, self.preprocess or PreprocessConfig(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        lite = EfficientNetLiteConfig(
            variant=LITE_FAMILIES[family], frozen_stages=frozen_stages, head=head, dropout=dropout
        )
        return lite, self.preprocess or PreprocessConfig(size=size, mean=LITE_MEAN, std=LITE_STD)


def small_cnn_resolutions(median_side: int) -> tuple[int, ...]:
    """From the images' own size up to twice it (at least 32 px), among the offered resolutions."""
    low, high = median_side, max(2 * median_side, 32)
    chosen = tuple(size for size in SMALL_CNN_RESOLUTIONS if low <= size <= high)
    return chosen or (_closest(SMALL_CNN_RESOLUTIONS, median_side),)


def space_for(
    profile: DatasetProfile,
    *,
    seed: int = 0,
    preprocess: PreprocessConfig | None = None,
    backbones: Sequence[UserBackboneConfig] = (),
) -> SearchSpace:
    """The search space for a dataset: CNNs from scratch for small images, Lite backbones first otherwise.

    Only the Lite variants whose weights package is installed are offered (nothing
    is ever downloaded). The user's backbones come last, so the warm start stays
    the known-good recipe of the dataset's kind.
    """
    names = tuple(backbone.name for backbone in backbones)
    if profile.small_images:
        return SearchSpace(
            families=(CNN, *names),
            cnn_resolutions=small_cnn_resolutions(profile.median_side),
            lite_resolutions={},
            backbones=tuple(backbones),
            seed=seed,
            preprocess=preprocess,
        )
    lite = {family: variant for family, variant in LITE_FAMILIES.items() if lite_weights_installed(variant)}
    return SearchSpace(
        families=(*lite, CNN, *names),
        cnn_resolutions=LARGE_CNN_RESOLUTIONS,
        lite_resolutions={variant: LITE_TRIAL_RESOLUTIONS[variant] for variant in lite.values()},
        backbones=tuple(backbones),
        epochs=(3, 20),
        seed=seed,
        preprocess=preprocess,
    )
