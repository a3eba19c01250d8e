"""int8 quantisation with ONNX Runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from autovision.export import onnx_logits, quantize_int8
from autovision.export.bundle import ExportedModel
from autovision.export.quantize import CALIBRATION_BATCH, calibration_batches
from autovision.preprocess import FloatArray


@pytest.mark.training
def test_int8_model_is_quantised_and_close(exported: ExportedModel, images: torch.Tensor) -> None:
    operators = {node.op_type for node in onnx.load(str(exported.int8_onnx)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    fp32 = onnx_logits(exported.onnx, images[:30].numpy())
    assert np.abs(exported.int8_logits - fp32).max() < 0.5, "int8 stays near fp32 on calibrated data"


@pytest.mark.training
def test_quantisation_needs_calibration_images(exported: ExportedModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration images"):
        quantize_int8(exported.onnx, [np.zeros((0, 3, 16, 16), np.float32)], tmp_path / "int8.onnx")


def test_calibration_reads_batches_of_any_size_only_as_far_as_it_needs() -> None:
    read: list[int] = []

    def batches() -> Iterator[FloatArray]:
        for start in range(0, 1000, 50):
            read.append(start)
            yield np.full((50, 3, 2, 2), start, np.float32)

    chosen = list(calibration_batches(batches(), images=70))
    assert [len(batch) for batch in chosen] == [CALIBRATION_BATCH, CALIBRATION_BATCH, 70 - 2 * CALIBRATION_BATCH]
    assert read == [0, 50], "the third input batch is never read"
    assert [float(batch[-1, 0, 0, 0]) for batch in chosen] == [0.0, 50.0, 50.0]
