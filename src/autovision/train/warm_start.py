"""Starting a model from a finished run's weights instead of its family's initialisation.

A run retrained from a served model (``--base-model``) keeps its base's final
weights in the run itself (``base/weights.pt``) and names them in every trial's
``TrainConfig.initial_weights``, so trials, the final fit and the data-parallel
ranks all start from them. Each file is read once per process, however many
trials start from it; the search preloads it with the run's storage settings,
a process that did not (a rank of the final fit) reads it with the settings of
its environment.

The architecture comes from the base's model card: ``architecture_from`` rebuilds
a family's configuration from its ``describe()`` data, which every family writes
as its dataclass fields plus the family name.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping

import torch
from torch import nn

from autovision.settings import Settings
from autovision.storage import read_uris
from autovision.train.families import family_describing, family_of
from autovision.train.families.base import ArchitectureConfig
from autovision.train.models import build_model

_WEIGHTS: dict[str, dict[str, torch.Tensor]] = {}


def initial_weights(uri: str, settings: Settings | None = None) -> dict[str, torch.Tensor]:
    """The state dict at ``uri`` (a base run's final weights), read once per process."""
    if uri not in _WEIGHTS:
        data = read_uris([uri], settings)[0]
        _WEIGHTS[uri] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return _WEIGHTS[uri]


def starting_model(architecture: ArchitectureConfig, num_classes: int, weights_uri: str | None) -> nn.Module:
    """The model a training run starts from: its family's initialisation, or the weights at ``weights_uri``."""
    if weights_uri is None:
        return build_model(architecture, num_classes)
    return family_of(architecture).restore(architecture, num_classes, initial_weights(weights_uri))


def architecture_from(description: Mapping[str, object]) -> ArchitectureConfig:
    """The architecture a model card describes, rebuilt by its family; ValueError when it cannot be."""
    family = family_describing(description)
    fields = dataclasses.fields(family.config_type)
    values = {field.name: _tuples(description[field.name]) for field in fields if field.name in description}
    config: ArchitectureConfig = family.config_type(**values)
    if _as_json(config.describe()) != _as_json(dict(description)):
        raise ValueError(f"the {family.name} family cannot rebuild the architecture {dict(description)}")
    return config


def _tuples(value: object) -> object:
    """JSON lists back as the tuples frozen dataclasses hold."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _as_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)
