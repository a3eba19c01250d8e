"""int8 quantisation with ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from autovision.export import onnx_logits, quantize_int8
from autovision.export.bundle import ExportedModel


@pytest.mark.training
def test_int8_model_is_quantised_and_close(exported: ExportedModel, images: torch.Tensor) -> None:
    operators = {node.op_type for node in onnx.load(str(exported.int8_onnx)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    fp32 = onnx_logits(exported.onnx, images[:30].numpy())
    assert np.abs(exported.int8_logits - fp32).max() < 0.5, "int8 stays near fp32 on calibrated data"


@pytest.mark.training
def test_quantisation_needs_calibration_images(exported: ExportedModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration images"):
        quantize_int8(exported.onnx, np.zeros((0, 3, 16, 16), np.float32), tmp_path / "int8.onnx")
