"""The int8 ``.tflite`` quantiser: a convolution followed by ReLU6 is quantised after the clamp, not before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")

from autovision.export.edge_files import EdgeInput
from autovision.export.tflite import export_tflite, tflite_logits

pytestmark = pytest.mark.training


def _conv_relu6() -> nn.Module:
    """Convolution outputs far beyond ReLU6's 0..6, as an unclamped int8 scale would have to cover."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(30)
    return nn.Sequential(conv, nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def test_relu6_outputs_get_the_int8_levels_of_their_own_range(tmp_path: Path) -> None:
    model, images = _conv_relu6(), torch.rand(24, 3, 8, 8) * 2 - 1
    spec = EdgeInput(labels=tuple("abcd"), size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    path = export_tflite(model, images[:1], spec, tmp_path / "int8.tflite", calibration_inputs=images[:16])
    with torch.no_grad():
        expected = model(images[16:]).numpy()
    # One int8 step over 0..6 is 6/255 = 0.024; over the convolution's own range (about -60..60) it is 0.5.
    assert np.abs(tflite_logits(path, images[16:].numpy()) - expected).max() < 0.05
