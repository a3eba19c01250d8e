from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

from autovision.explain.base import ExplainError, ExplainSettings
from autovision.explain.methods import attribute, explained_model
from autovision.train.families.base import ArchitectureConfig
from autovision.train.families.efficientnet_lite import EfficientNetLiteConfig
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.families.user_backbone import UserBackboneConfig
from autovision.train.models import build_model

ARCHITECTURES: dict[str, ArchitectureConfig] = {
    "residual_cnn": ResidualCNNConfig(width=4, stages=2, head="mlp"),
    "efficientnet_lite0": EfficientNetLiteConfig(variant=0, pretrained=False),
    "user_backbone": UserBackboneConfig("mine", "resnet18", "file:///nowhere.pth", pretrained=False),
}


def torchscript(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """The model as the run's model.pt holds it: traced, saved and loaded (a traced module's submodules are
    callable only once loaded)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, inputs), buffer)  # type: ignore[no-untyped-call]
        buffer.seek(0)
        module: nn.Module = torch.jit.load(buffer)  # type: ignore[no-untyped-call]
    return module


@pytest.mark.training
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_each_family_splits_its_model_and_its_torchscript_after_a_convolutional_stage(name: str) -> None:
    torch.manual_seed(0)
    architecture = ARCHITECTURES[name]
    model = build_model(architecture, 3).eval()
    inputs = torch.randn(2, 3, 64, 64)
    for module in (model, torchscript(model, inputs)):
        split = explained_model(module, architecture.describe())
        with torch.no_grad():
            maps = split.features(inputs)
            torch.testing.assert_close(split.head(maps), model(inputs))
        assert maps.ndim == 4
        assert maps.shape[-1] > 1


def test_an_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="no registered model family describes"):
        explained_model(nn.Identity(), {"family": "vit"})


def test_attribute_checks_labels_before_it_computes() -> None:
    torch.manual_seed(0)
    architecture = ARCHITECTURES["residual_cnn"]
    split = explained_model(build_model(architecture, 3).eval(), architecture.describe())
    inputs = torch.randn(2, 3, 16, 16)
    for method in ("grad_cam", "integrated_gradients"):
        maps = attribute(split, inputs, torch.tensor([0, 2]), ExplainSettings(method, steps=2), num_classes=3)
        assert maps.shape == (2, 16, 16)
        assert not maps.requires_grad
        assert maps.min() >= 0
    with pytest.raises(ExplainError, match="labels must be in"):
        attribute(split, inputs, torch.tensor([0, 3]), ExplainSettings(), num_classes=3)
