"""Building the classifier an architecture describes, whatever its family.

The families themselves (the residual CNN, EfficientNet-Lite, user backbones)
live in ``autovision.train.families``, one module each behind one interface;
``build_model`` finds an architecture's family in their registry. Every
architecture is a frozen dataclass so the search can vary it and the model card
can record it (``describe``); the module it builds maps normalised NCHW float
input to logits.

The run, the command lines and the trainer image check a user's backbone weights
before the search starts through the names re-exported here.
"""

from __future__ import annotations

from torch import nn

from autovision.train.families import family_of
from autovision.train.families.base import ArchitectureConfig
from autovision.train.families.user_backbone import BackboneWeightsError, UserBackboneConfig, backbone_weights

__all__ = [
    "BackboneWeightsError",
    "UserBackboneConfig",
    "backbone_weights",
    "build_model",
    "parameter_count",
]


def build_model(architecture: ArchitectureConfig, num_classes: int) -> nn.Module:
    """The classifier an architecture describes (pretrained weights loaded where it says so)."""
    return family_of(architecture).build(architecture, num_classes)


def parameter_count(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in model.parameters())
