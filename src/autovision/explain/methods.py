"""One entry point over the methods: the settings pick the method, the family picks Grad-CAM's layer."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from autovision.explain.base import Deadline, ExplainedModel, ExplainSettings, check_inputs
from autovision.explain.grad_cam import grad_cam
from autovision.explain.integrated_gradients import integrated_gradients
from autovision.train.families import family_describing
from autovision.train.families.layers import embedded_split


def explained_model(model: nn.Module, architecture: Mapping[str, object]) -> ExplainedModel:
    """``model`` (eager or TorchScript) split where its family, found from a model card's ``architecture``,
    says its last convolutional stage ends; an export with an embedding output is split there already."""
    split = embedded_split(model)
    if split is not None:
        return ExplainedModel(*split)
    features, head = family_describing(architecture).last_conv_stage(model)
    return ExplainedModel(features, head)


def attribute(
    model: ExplainedModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    settings: ExplainSettings,
    *,
    num_classes: int,
    deadline: Deadline | None = None,
) -> torch.Tensor:
    """Attribution maps (N, H, W) of ``settings.method`` for ``targets``; inputs and labels checked first."""
    check_inputs(inputs, targets, num_classes)
    deadline = deadline or Deadline()
    with torch.enable_grad():
        if settings.method == "grad_cam":
            maps = grad_cam(model, inputs, targets, deadline)
        else:
            maps = integrated_gradients(model, inputs, targets, deadline, settings.steps)
    return maps.detach()
