"""Model families the search draws from.

The walking skeleton has one family: a small residual CNN for small images, where
ImageNet features help little. Its shape is data (``ResidualCNNConfig``) so the
search can vary it and the model card can record it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ResidualCNNConfig:
    """Width of the first stage, stages (each halves resolution), blocks per stage."""

    width: int = 16
    stages: int = 3
    blocks_per_stage: int = 1
    dropout: float = 0.1

    def describe(self) -> dict[str, object]:
        return {"family": "residual_cnn", **asdict(self)}


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(x + self.body(x))
        return out


def _conv_bn(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def build_residual_cnn(config: ResidualCNNConfig, num_classes: int) -> nn.Module:
    """A ResNet-style classifier sized by ``config``; logits out, no softmax."""
    layers: list[nn.Module] = [_conv_bn(3, config.width, stride=1)]
    channels = config.width
    for stage in range(config.stages):
        out_channels = config.width * 2**stage
        layers.append(_conv_bn(channels, out_channels, stride=1 if stage == 0 else 2))
        layers.extend(_ResidualBlock(out_channels) for _ in range(config.blocks_per_stage))
        channels = out_channels
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(config.dropout),
        nn.Linear(channels, num_classes),
    ]
    return nn.Sequential(*layers)
