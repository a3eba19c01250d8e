"""User backbones: torchvision ResNets (``autovision.train.resnet``) with the user's own weights.

The weights are read by URI through the storage layer, never from a hub, once
per process, and checked against the declared architecture before the search
starts. Each backbone is a family of its own in trials, named by the user; it is
fine-tuned like EfficientNet-Lite, on images of any size (the user asked for
it), normalised as torchvision's ImageNet weights expect.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from autovision.preprocess import IMAGENET_MEAN, IMAGENET_STD
from autovision.resources import ResNetArchitecture
from autovision.settings import Settings
from autovision.storage import StorageError, open_uri
from autovision.train.families.base import FineTunedFamily, Stage, child
from autovision.train.families.layers import FineTunedModule, HeadKind, classifier
from autovision.train.resnet import ResNet

if TYPE_CHECKING:
    from autovision.search.space import DatasetProfile, SearchSpace

# torchvision's ResNets were trained at 224 px: trials go up to that resolution, frozen up to the
# stem, then through layer1, layer2 or layer3 (of four).
BACKBONE_RESOLUTIONS = (160, 192, 224)
BACKBONE_FROZEN_STAGES = (0, 2, 3, 4)


@dataclass(frozen=True)
class UserBackboneConfig:
    """A torchvision ResNet with the user's weights (``weights_uri``), fine-tuned like EfficientNet-Lite.

    Stage 0 is the stem (conv1, bn1), stages 1-4 are layer1-layer4. ``name`` is
    the family name the user gave it; ``pretrained`` False skips reading the
    weights (a checkpoint restore brings every weight itself).
    """

    name: str
    architecture: ResNetArchitecture
    weights_uri: str
    frozen_stages: int = 0
    head: HeadKind = "linear"
    dropout: float = 0.2
    pretrained: bool = True

    @property
    def family(self) -> str:
        """The family name used in trial tables and status: the user's name for the backbone."""
        return self.name

    def describe(self) -> dict[str, object]:
        """The architecture as JSON-ready data, for the model card."""
        return {"family": self.family, **asdict(self)}


# Raw state dicts by URI: each file is read once per process, however many trials build on it.
_USER_WEIGHTS: dict[str, dict[str, torch.Tensor]] = {}
# How many offending keys an error names, of each kind.
_NAMED_KEYS = 3


class BackboneWeightsError(ValueError):
    """A user backbone's weights cannot be used: unreadable, not a state_dict, or another architecture's."""


class UserResNet(FineTunedModule, ResNet):
    """A torchvision-layout ResNet whose ``fc`` is the task's classifier on the pooled features."""

    def __init__(self, config: UserBackboneConfig, num_classes: int) -> None:
        super().__init__(config.architecture)
        self.fc = nn.Sequential(*classifier(self.features, num_classes, config.head, config.dropout))
        self.freeze(config.frozen_stages)

    def stage_modules(self) -> list[nn.Module]:
        """The stem (conv1, bn1), then layer1-layer4."""
        return [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3, self.layer4]


def _is_imagenet_classifier(key: str) -> bool:
    """The file's ``fc`` is replaced by the task's head: its presence and size do not matter."""
    return key.startswith("fc.")


def backbone_weights(config: UserBackboneConfig, settings: Settings | None = None) -> dict[str, torch.Tensor]:
    """The backbone's weights, read through storage once per process and checked against its architecture.

    The run calls this while it sets up the search, with its storage settings, so
    that a bad file fails the run before any trial; every trial's model then
    reuses what was read. Without ``settings`` (a worker process) the
    environment's are used, which is where a run's own come from.
    """
    if config.weights_uri not in _USER_WEIGHTS:
        _USER_WEIGHTS[config.weights_uri] = _read_state_dict(config, settings or Settings())
    state = _USER_WEIGHTS[config.weights_uri]
    _check_layout(config, state)
    return state


def _read_state_dict(config: UserBackboneConfig, settings: Settings) -> dict[str, torch.Tensor]:
    try:
        with open_uri(config.weights_uri, settings) as file:
            data = file.read()
    except (StorageError, OSError) as error:
        raise BackboneWeightsError(f"backbone {config.name!r}: cannot read {config.weights_uri}: {error}") from error
    not_a_state_dict = BackboneWeightsError(
        f"backbone {config.name!r}: {config.weights_uri} is not a state_dict saved with torch.save "
        "(save model.state_dict(), not the model)"
    )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as error:
        raise not_a_state_dict from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(tensor, torch.Tensor) for key, tensor in state.items()
    ):
        raise not_a_state_dict
    return state


def _check_layout(config: UserBackboneConfig, state: dict[str, torch.Tensor]) -> None:
    """Every key and shape of torchvision's architecture but the classifier; batch counters may be absent."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        reference = ResNet(config.architecture).state_dict()
    expected = {key: tuple(tensor.shape) for key, tensor in reference.items() if not _is_imagenet_classifier(key)}
    given = {key: tuple(tensor.shape) for key, tensor in state.items() if not _is_imagenet_classifier(key)}
    problems = {
        "missing": [key for key in expected if key not in given and not key.endswith(".num_batches_tracked")],
        "unexpected": [key for key in given if key not in expected],
        "wrong shape": [
            f"{key} {given[key]} instead of {expected[key]}"
            for key in expected
            if key in given and given[key] != expected[key]
        ],
    }
    found = [f"{kind} {_first(keys)}" for kind, keys in problems.items() if keys]
    if found:
        raise BackboneWeightsError(
            f"backbone {config.name!r}: {config.weights_uri} is not a torchvision {config.architecture} "
            f"state_dict: {'; '.join(found)}"
        )


def _first(keys: list[str]) -> str:
    more = len(keys) - _NAMED_KEYS
    return ", ".join(keys[:_NAMED_KEYS]) + (f" and {more} more" if more > 0 else "")


def build_user_backbone(config: UserBackboneConfig, num_classes: int) -> UserResNet:
    """The user's ResNet with its weights (when ``pretrained``) and a freshly initialised head."""
    model = UserResNet(config, num_classes)
    if config.pretrained:
        backbone = {key: tensor for key, tensor in backbone_weights(config).items() if not _is_imagenet_classifier(key)}
        model.load_state_dict(model.state_dict() | backbone, strict=True)
    return model


class UserBackboneFamily(FineTunedFamily[UserBackboneConfig]):
    """The space's ``backbones``, each searched under its own name: resolutions ``backbone_resolutions``,
    frozen stages ``backbone_frozen_stages``."""

    name = "user_backbone"
    config_type = UserBackboneConfig
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def serves(self, choice: str, space: SearchSpace) -> bool:
        """The name of one of the space's backbones."""
        return any(backbone.name == choice for backbone in space.backbones)

    def offer(self, space: SearchSpace, profile: DatasetProfile) -> SearchSpace:
        """Every backbone the user gave, whatever the images' size."""
        return replace(space, families=(*space.families, *(backbone.name for backbone in space.backbones)))

    def choices(self, choice: str, space: SearchSpace) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The space's backbone resolutions and frozen-stage counts."""
        return space.backbone_resolutions, space.backbone_frozen_stages

    def configure(
        self, choice: str, space: SearchSpace, frozen_stages: int, head: HeadKind, dropout: float
    ) -> UserBackboneConfig:
        """The backbone of that name, with the drawn fine-tuning."""
        backbone = next(backbone for backbone in space.backbones if backbone.name == choice)
        return replace(backbone, frozen_stages=frozen_stages, head=head, dropout=dropout)

    def build(self, config: UserBackboneConfig, num_classes: int) -> nn.Module:
        """See ``build_user_backbone``."""
        return build_user_backbone(config, num_classes)

    def describes(self, description: Mapping[str, object]) -> bool:
        """A backbone's architecture: the only one that names its weights file."""
        return "weights_uri" in description

    def last_conv_stage(self, model: nn.Module) -> tuple[Stage, Stage]:
        """After layer4, as ``ResNet.forward`` runs it; the head is its pooling and ``fc``."""
        stem_and_layers = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
        features = nn.Sequential(*(child(model, name) for name in stem_and_layers))
        return features, nn.Sequential(child(model, "avgpool"), nn.Flatten(1), child(model, "fc"))
