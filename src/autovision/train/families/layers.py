"""Layers more than one model family uses: the task's classifier head and partial fine-tuning.

Pretrained families share their fine-tuning: a fresh task head (linear or MLP,
with dropout) replaces the ImageNet classifier, and the first ``frozen_stages``
stages (the stem is stage 0) keep their weights and batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Self

import torch
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


class LogitsAndEmbedding(nn.Module):
    """A classifier with a second output, its embedding: what every export serves (logits, then embedding).

    ``features`` and ``head`` are the family's split after its last convolutional
    stage (sharing the classifier's weights); the embedding is the global average
    of the feature maps between them, the pooled features the head starts from.
    A traced archive keeps both as submodules, so readers that need the logits
    alone (the explainer, edge export) split it with ``embedded_split``.
    """

    def __init__(
        self,
        features: Callable[[torch.Tensor], torch.Tensor],
        head: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        maps = self.features(x)
        return self.head(maps), maps.mean(dim=(2, 3))


def embedded_split(model: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """An export with an embedding output (eager or TorchScript) as its features and head; None for a plain
    classifier (a run exported before embeddings were)."""
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if isinstance(features, nn.Module) and isinstance(head, nn.Module) and len(dict(model.named_children())) == 2:
        return features, head
    return None
