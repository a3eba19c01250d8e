"""The interface every model family implements, and what the pretrained families share (pure: no I/O).

A family is one kind of model the search can draw: it says which trial names
are its own, how it joins a dataset's default space, what it suggests for a
trial (its part of the search space and the preprocessing its input needs),
what it warm-starts a study with, how it builds its ``nn.Module`` and how that
module is rebuilt from a checkpoint's weights. The search space, the model
builder and checkpoint restore only ever talk to families through this class,
found in the registry (``autovision.train.families``).

A family's parameters are define-by-run: ``suggest`` draws whatever it likes,
under names of its own (prefixed with the trial's family name where another
family could draw a parameter of the same name with other choices).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import torch
from optuna.trial import BaseTrial
from torch import nn

from autovision.preprocess import PreprocessConfig
from autovision.train.families.layers import HeadKind, LogitsAndEmbedding

if TYPE_CHECKING:
    from autovision.search.space import DatasetProfile, SearchSpace


class ArchitectureConfig(Protocol):
    """What training, checkpoints and model cards need of any family's architecture (a frozen dataclass)."""

    @property
    def family(self) -> str:
        """The family name used in trial tables, status and model cards."""
        ...

    def describe(self) -> dict[str, object]:
        """The architecture as JSON-ready data, for the model card."""
        ...


class PretrainedConfig(ArchitectureConfig, Protocol):
    """An architecture that starts from pretrained weights, unless ``pretrained`` is False."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # a dataclass: ``restore`` replaces ``pretrained``

    @property
    def pretrained(self) -> bool:
        """Whether building it reads the pretrained weights."""
        ...


ConfigT = TypeVar("ConfigT", bound=ArchitectureConfig)
PretrainedT = TypeVar("PretrainedT", bound=PretrainedConfig)
Number = TypeVar("Number", int, float)
Stage = Callable[[torch.Tensor], torch.Tensor]


def closest(choices: Sequence[Number], target: Number) -> Number:
    """The choice nearest ``target`` (the smaller on a tie): how warm starts stay inside a narrowed space."""
    return min(choices, key=lambda choice: (abs(choice - target), choice))


def suggest_head(trial: BaseTrial) -> tuple[HeadKind, float]:
    """The classifier head and its dropout: parameters every built-in family shares, under the same names."""
    head: HeadKind = "mlp" if trial.suggest_categorical("head", ("linear", "mlp")) == "mlp" else "linear"
    return head, trial.suggest_float("dropout", 0.0, 0.5)


def child(model: nn.Module, name: str) -> nn.Module:
    """A module's direct submodule by name, eager or TorchScript (which has no ``get_submodule``)."""
    module = getattr(model, name)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{type(model).__name__}.{name} is not a module")
    return module


class ModelFamily(ABC, Generic[ConfigT]):
    """One kind of model the search can draw; subclass it and ``register_family`` an instance to add one.

    ``name`` is the family's registry key (and its trial name, unless ``serves``
    says otherwise); ``config_type`` the architecture class it builds, by which
    ``build_model`` and ``restore_model`` find it; ``fine_tuned`` whether it
    starts from pretrained weights, which picks the shared parameters' ranges
    (learning rate, warm-start recipe).
    """

    name: ClassVar[str]
    config_type: ClassVar[type[Any]]
    fine_tuned: ClassVar[bool] = False

    def serves(self, choice: str, space: SearchSpace) -> bool:
        """Whether the trial family name ``choice`` of ``space`` is this family's: by default, its own name."""
        return choice == self.name

    def offer(self, space: SearchSpace, profile: DatasetProfile) -> SearchSpace:
        """A dataset's default space with this family added where it suits the data.

        By default the family is not added: only a space that names it searches it.
        """
        return space

    @abstractmethod
    def warm_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        """This family's parameters of the study's first trial, when ``choice`` is the space's first family."""

    def cheapest_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        """This family's parameters of its cheapest configuration in ``space``, the first trial of a budget too
        small for the warm start; by default the warm start's."""
        return self.warm_start(choice, space)

    @abstractmethod
    def suggest(self, trial: BaseTrial, choice: str, space: SearchSpace) -> tuple[ConfigT, PreprocessConfig]:
        """A trial's architecture and the preprocessing its input needs (resolution from ``space.resolutions``)."""

    @abstractmethod
    def build(self, config: ConfigT, num_classes: int) -> nn.Module:
        """The classifier ``config`` describes: normalised NCHW floats in, logits out; pretrained weights loaded."""

    def restore(self, config: ConfigT, num_classes: int, weights: Mapping[str, torch.Tensor]) -> nn.Module:
        """The classifier holding a checkpoint's ``weights`` (every one of them)."""
        model = self.build(config, num_classes)
        model.load_state_dict(weights)
        return model

    def describes(self, description: Mapping[str, object]) -> bool:
        """Whether a model card's architecture (``describe()``'s data) is this family's: by default, its name."""
        return description.get("family") == self.name

    @abstractmethod
    def last_conv_stage(self, model: nn.Module) -> tuple[Stage, Stage]:
        """The model split after its last convolutional stage, the layer Grad-CAM reads: the features
        (input to NCHW feature maps) and the head (feature maps to logits).

        ``model`` is this family's module, eager or traced (TorchScript keeps the
        submodules, so the split only uses attribute access and calls).
        """

    def with_embedding(self, model: nn.Module) -> nn.Module:
        """``model`` with its embedding as a second output (logits, embedding [batch, D]): what exports serve
        and drift monitoring compares.

        By default the embedding is the global average of the last convolutional
        stage's feature maps (``last_conv_stage``): the pooled features the head
        starts from, the penultimate layer of a linear head (an MLP head's
        hidden layer is trained with the head, so it is left out). A family
        whose head pools otherwise overrides this.
        """
        return LogitsAndEmbedding(*self.last_conv_stage(model))


class FineTunedFamily(ModelFamily[PretrainedT]):
    """A family fine-tuned from pretrained weights: a trial draws its resolution, head and frozen stages.

    Its input is normalised as its weights were trained (``mean``, ``std``); the
    warm start fine-tunes everything at the highest offered resolution.
    """

    fine_tuned = True
    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]

    @abstractmethod
    def choices(self, choice: str, space: SearchSpace) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The resolutions offered (before a pinned preprocessing replaces them) and the frozen-stage counts."""

    @abstractmethod
    def configure(
        self, choice: str, space: SearchSpace, frozen_stages: int, head: HeadKind, dropout: float
    ) -> PretrainedT:
        """The architecture of trial name ``choice`` with the drawn fine-tuning."""

    def warm_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        """Full resolution, nothing frozen (or as little as the space allows)."""
        resolutions, frozen_stages = self.choices(choice, space)
        return {
            f"{choice}.resolution": space.resolutions(resolutions)[-1],
            f"{choice}.frozen_stages": closest(frozen_stages, 0),
        }

    def cheapest_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        """The lowest resolution, as much frozen as the space allows: the fewest pixels and gradients."""
        resolutions, frozen_stages = self.choices(choice, space)
        return {
            f"{choice}.resolution": min(space.resolutions(resolutions)),
            f"{choice}.frozen_stages": max(frozen_stages),
        }

    def suggest(self, trial: BaseTrial, choice: str, space: SearchSpace) -> tuple[PretrainedT, PreprocessConfig]:
        """Resolution, head and frozen stages; the weights' own normalisation."""
        resolutions, frozen_choices = self.choices(choice, space)
        size = int(trial.suggest_categorical(f"{choice}.resolution", space.resolutions(resolutions)))
        head, dropout = suggest_head(trial)
        frozen_stages = int(trial.suggest_categorical(f"{choice}.frozen_stages", frozen_choices))
        config = self.configure(choice, space, frozen_stages, head, dropout)
        return config, PreprocessConfig(size=size, mean=self.mean, std=self.std)

    def restore(self, config: PretrainedT, num_classes: int, weights: Mapping[str, torch.Tensor]) -> nn.Module:
        """Built without reading pretrained weights: the checkpoint brings every weight itself."""
        return super().restore(dataclasses.replace(config, pretrained=False), num_classes, weights)
