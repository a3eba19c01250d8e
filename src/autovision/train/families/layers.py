"""Layers more than one model family uses: the task's classifier head and partial fine-tuning.

Pretrained families share their fine-tuning: a fresh task head (linear or MLP,
with dropout) replaces the ImageNet classifier, and the first ``frozen_stages``
stages (the stem is stage 0) keep their weights and batch-norm statistics.
"""

from __future__ import annotations

from typing import Literal, Self

from torch import nn

HeadKind = Literal["linear", "mlp"]


def classifier(in_features: int, num_classes: int, kind: HeadKind, dropout: float) -> list[nn.Module]:
    """A linear layer or a one-hidden-layer MLP on pooled features, with dropout before the output."""
    layers: list[nn.Module] = []
    if kind == "mlp":
        layers += [nn.Linear(in_features, in_features), nn.ReLU(inplace=True)]
    return [*layers, nn.Dropout(dropout), nn.Linear(in_features, num_classes)]


def pooled_head(in_features: int, num_classes: int, kind: HeadKind, dropout: float) -> nn.Sequential:
    """Global average pooling, then the classifier: the head every family puts on its feature maps."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), *classifier(in_features, num_classes, kind, dropout))


class FineTunedModule(nn.Module):
    """A pretrained network whose first ``frozen_stages`` stages keep their weights and batch-norm statistics."""

    frozen_stages: int

    def stage_modules(self) -> list[nn.Module]:
        """The network's stages in input order, the stem first: the units ``frozen_stages`` counts."""
        raise NotImplementedError

    def _frozen(self) -> nn.ModuleList:
        return nn.ModuleList(self.stage_modules()[: self.frozen_stages])

    def freeze(self, stages: int) -> None:
        """Fix the first ``stages`` stages: no gradients, and (see ``train``) no batch-norm updates."""
        self.frozen_stages = stages
        for parameter in self._frozen().parameters():
            parameter.requires_grad_(False)

    def train(self, mode: bool = True) -> Self:
        """Train mode everywhere except the frozen stages, whose batch-norm statistics stay the pretrained ones."""
        super().train(mode)
        self._frozen().eval()
        return self
