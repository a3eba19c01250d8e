"""int8 ONNX with ONNX Runtime's static quantisation: the edge and CPU option.

Static (calibrated) rather than dynamic quantisation, because the models are
convolutional: dynamic quantisation only pays off for MatMul-heavy models and leaves
convolution activations in float. The QDQ format keeps the graph standard ONNX, so
ONNX Runtime on CPU and TensorRT both run it. Calibration uses validation images,
never test images, so the test accuracy reported for int8 stays honest.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from autovision.export.edge_files import CALIBRATION_IMAGES
from autovision.export.onnx_export import ONNX_INPUT
from autovision.preprocess import FloatArray

# Images ONNX Runtime runs at once while calibrating: what its session holds activations for. Of each batch
# onnxruntime 1.32 keeps only each calibrated tensor's min and max (not the model's outputs), so nothing else
# grows with the calibration images. Its ``CalibMaxIntermediateOutputs`` option, meant to bound
# that, drops the collected ranges instead of merging them in onnxruntime 1.32 (microsoft/onnxruntime#18893):
# it is not set.
CALIBRATION_BATCH = 32


def calibration_batches(inputs: Iterable[FloatArray], images: int = CALIBRATION_IMAGES) -> Iterator[FloatArray]:
    """The first ``images`` calibration images, ``CALIBRATION_BATCH`` at a time, read from ``inputs`` (batches of
    any size) only as far as needed."""
    held: list[FloatArray] = []
    count = taken = 0
    for batch in inputs:
        for start in range(0, len(batch), CALIBRATION_BATCH):
            piece = batch[start : start + min(CALIBRATION_BATCH - count, images - taken)]
            held.append(piece)
            count, taken = count + len(piece), taken + len(piece)
            if count == CALIBRATION_BATCH or taken == images:
                yield np.ascontiguousarray(np.concatenate(held), dtype=np.float32)
                held, count = [], 0
            if taken == images:
                return
    if held:
        yield np.ascontiguousarray(np.concatenate(held), dtype=np.float32)


class _Calibration(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration images to the quantiser batch by batch, reading each only when asked."""

    def __init__(self, batches: Iterator[FloatArray]) -> None:
        self._batches = batches

    def get_next(self) -> dict[str, FloatArray] | None:
        """The next batch of model inputs, or None once all are used."""
        batch = next(self._batches, None)
        return None if batch is None else {ONNX_INPUT: batch}


def quantize_int8(onnx_path: Path, calibration_inputs: Iterable[FloatArray], out_path: Path) -> Path:
    """Quantise weights (per channel) and activations to int8, calibrated on up to 256 images read batch by batch
    from ``calibration_inputs`` (batches of any size; ``[array]`` for one array), ``CALIBRATION_BATCH`` at a
    time."""
    batches = calibration_batches(calibration_inputs)
    first = next(batches, None)
    if first is None:
        raise ValueError("int8 quantisation needs calibration images; the validation split is empty")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autovision-quantize-") as workdir:
        prepared = Path(workdir) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(itertools.chain([first], batches)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return out_path
