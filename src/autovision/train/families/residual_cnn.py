"""The searchable residual CNN, trained from scratch (pure: no I/O).

Small images (digits, CIFAR-10) gain little from ImageNet features, so this
family is their default; for larger images it is searched too, at low
resolution, as the fast end of the latency range. Depth, width, kernel and the
downsampling schedule are data (``ResidualCNNConfig``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from optuna.trial import BaseTrial
from torch import nn

from autovision.preprocess import PreprocessConfig
from autovision.train.families.base import ModelFamily, Stage, closest, suggest_head
from autovision.train.families.layers import HeadKind, pooled_head

if TYPE_CHECKING:
    from autovision.search.space import DatasetProfile, SearchSpace

CNN = "residual_cnn"
# Resolutions offered: small images go up to twice their size (or 32 px), larger ones are only ever seen downscaled.
SMALL_CNN_RESOLUTIONS = (16, 24, 32, 48, 64)
LARGE_CNN_RESOLUTIONS = (64, 96, 128)
# Below this input size a stride-2 stem leaves too little resolution for the stages after it.
MIN_STEM_DOWNSAMPLING_SIZE = 32


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
        return CNN

    def describe(self) -> dict[str, object]:
        """The architecture as JSON-ready data, for the model card."""
        return {"family": self.family, **asdict(self)}


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
    layers.extend(pooled_head(channels, num_classes, config.head, config.dropout))
    return nn.Sequential(*layers)


def small_cnn_resolutions(median_side: int) -> tuple[int, ...]:
    """From the images' own size up to twice it (at least 32 px), among the offered resolutions."""
    low, high = median_side, max(2 * median_side, 32)
    chosen = tuple(size for size in SMALL_CNN_RESOLUTIONS if low <= size <= high)
    return chosen or (closest(SMALL_CNN_RESOLUTIONS, median_side),)


class ResidualCNNFamily(ModelFamily[ResidualCNNConfig]):
    """The residual CNN in the search: its shape choices are the space's ``widths``, ``stage_counts``,
    ``depths``, ``kernels`` and ``stem_strides``, its resolutions ``cnn_resolutions``."""

    name = CNN
    config_type = ResidualCNNConfig

    def offer(self, space: SearchSpace, profile: DatasetProfile) -> SearchSpace:
        """Always offered: near the images' own size when they are small, downscaled otherwise."""
        resolutions = small_cnn_resolutions(profile.median_side) if profile.small_images else LARGE_CNN_RESOLUTIONS
        return replace(space, families=(*space.families, CNN), cnn_resolutions=resolutions)

    def warm_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        """A small, shallow net at about 32 px."""
        size = closest(space.resolutions(space.cnn_resolutions), 32)
        stem = {"stem_stride": min(space.stem_strides)} if size >= MIN_STEM_DOWNSAMPLING_SIZE else {}
        return stem | {
            f"{CNN}.resolution": size,
            "width": closest(space.widths, 16),
            "stages": closest(space.stage_counts, 3),
            "depth": closest(space.depths, 1),
            "kernel": closest(space.kernels, 3),
        }

    def cheapest_start(self, choice: str, space: SearchSpace) -> dict[str, Any]:
        """The lowest resolution and the smallest net, downsampled at the stem where the size allows."""
        size = min(space.resolutions(space.cnn_resolutions))
        stem = {"stem_stride": max(space.stem_strides)} if size >= MIN_STEM_DOWNSAMPLING_SIZE else {}
        return stem | {
            f"{CNN}.resolution": size,
            "width": min(space.widths),
            "stages": min(space.stage_counts),
            "depth": min(space.depths),
            "kernel": min(space.kernels),
        }

    def suggest(self, trial: BaseTrial, choice: str, space: SearchSpace) -> tuple[ResidualCNNConfig, PreprocessConfig]:
        """Resolution, head, then the net's shape."""
        size = int(trial.suggest_categorical(f"{CNN}.resolution", space.resolutions(space.cnn_resolutions)))
        head, dropout = suggest_head(trial)
        architecture = ResidualCNNConfig(
            width=int(trial.suggest_categorical("width", space.widths)),
            stages=int(trial.suggest_categorical("stages", space.stage_counts)),
            blocks_per_stage=int(trial.suggest_categorical("depth", space.depths)),
            kernel=int(trial.suggest_categorical("kernel", space.kernels)),
            stem_stride=self._stem_stride(trial, size, space),
            head=head,
            dropout=dropout,
        )
        return architecture, PreprocessConfig(size=size)

    @staticmethod
    def _stem_stride(trial: BaseTrial, size: int, space: SearchSpace) -> int:
        """A downsampling stem only where the input is large enough to afford it."""
        if size < MIN_STEM_DOWNSAMPLING_SIZE:
            return 1
        return int(trial.suggest_categorical("stem_stride", space.stem_strides))

    def build(self, config: ResidualCNNConfig, num_classes: int) -> nn.Module:
        """See ``build_residual_cnn``."""
        return build_residual_cnn(config, num_classes)

    def last_conv_stage(self, model: nn.Module) -> tuple[Stage, Stage]:
        """After the last residual block: the stem and every stage carry weights, the pooled head begins with
        the first child that has none (its average pooling)."""
        children = list(model.children())
        split = next(index for index, child in enumerate(children) if not any(True for _ in child.parameters()))
        return nn.Sequential(*children[:split]), nn.Sequential(*children[split:])
