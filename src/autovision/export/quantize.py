"""int8 ONNX with ONNX Runtime's static quantisation: the edge and CPU option.

Static (calibrated) rather than dynamic quantisation, because the models are
convolutional: dynamic quantisation only pays off for MatMul-heavy models and leaves
convolution activations in float. The QDQ format keeps the graph standard ONNX, so
ONNX Runtime on CPU and TensorRT both run it. Calibration uses validation images,
never test images, so the test accuracy reported for int8 stays honest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from autovision.export.onnx_export import ONNX_INPUT
from autovision.preprocess import FloatArray

CALIBRATION_IMAGES = 256
CALIBRATION_BATCH = 32


class _Calibration(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration images to the quantiser batch by batch."""

    def __init__(self, inputs: FloatArray) -> None:
        self._batches: Iterator[dict[str, FloatArray]] = (
            {ONNX_INPUT: inputs[start : start + CALIBRATION_BATCH]}
            for start in range(0, len(inputs), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, FloatArray] | None:
        """The next batch of model inputs, or None once all are used."""
        return next(self._batches, None)


def quantize_int8(onnx_path: Path, calibration_inputs: FloatArray, out_path: Path) -> Path:
    """Quantise weights (per channel) and activations to int8, calibrated on up to 256 images."""
    if len(calibration_inputs) == 0:
        raise ValueError("int8 quantisation needs calibration images; the validation split is empty")
    chosen = np.ascontiguousarray(calibration_inputs[:CALIBRATION_IMAGES], dtype=np.float32)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autovision-quantize-") as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(chosen),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return out_path
