"""LiteRT (TFLite) exports, fp32 and full-integer int8, through Google's PyTorch converter.

``litert-torch`` lowers a ``torch.export`` program to TFLite without TensorFlow. The
file takes what a phone camera gives, an NHWC float image normalised as in training
(metadata says how), and returns logits. The int8 file is full-integer: int8
weights, activations, input and output, calibrated with PT2E observers on training
images only, so the accuracy measured on the test split stays honest.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from autovision.export.edge_files import CALIBRATION_IMAGES, EdgeInput, write_atomically
from autovision.export.tflite_metadata import attach_metadata
from autovision.preprocess import FloatArray

CALIBRATION_BATCH = 1


class ChannelsLast(nn.Module):
    """The trained model behind an NHWC input, the layout TFLite image models take."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images.permute(0, 3, 1, 2))  # type: ignore[no-any-return]


def _flatbuffer(model: nn.Module, example: torch.Tensor, calibration: torch.Tensor | None) -> bytes:
    import litert_torch

    wrapped = ChannelsLast(model.eval()).eval()
    args = (example.permute(0, 2, 3, 1).contiguous(),)
    if calibration is None:
        edge_model = litert_torch.convert(wrapped, args)
    else:
        quantized, quant_config = _quantized(wrapped, args, calibration)
        edge_model = litert_torch.convert(quantized, args, quant_config=quant_config)
    return bytes(edge_model.model_content())


def calibration_batches(calibration: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The observers' input: up to 256 of the given (training) images, NHWC, in batches."""
    return torch.split(calibration[:CALIBRATION_IMAGES].permute(0, 2, 3, 1).contiguous(), CALIBRATION_BATCH)


def _quantized(wrapped: nn.Module, args: tuple[torch.Tensor], calibration: torch.Tensor) -> tuple[nn.Module, object]:
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    from autovision.export.tflite_quantizer import tflite_quantizer

    quantizer = tflite_quantizer()
    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(wrapped, args).module(), quantizer)
    with torch.no_grad():
        for batch in calibration_batches(calibration):
            prepared(batch)
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    return converted, QuantConfig(pt2e_quantizer=quantizer)


def export_tflite(
    model: nn.Module,
    example: torch.Tensor,
    spec: EdgeInput,
    path: Path,
    calibration_inputs: torch.Tensor | None = None,
) -> Path:
    """Write a ``.tflite`` file with metadata and labels; int8 when calibration (training) images are given.

    Raises ``EdgeExportError`` naming the op the converter could not lower; nothing is
    left at ``path`` then.
    """
    if calibration_inputs is not None and len(calibration_inputs) == 0:
        raise ValueError("int8 TFLite needs calibration images; the training split is empty")
    fmt = "int8 TFLite" if calibration_inputs is not None else "TFLite"

    def write(staged: Path) -> None:
        for name in ("litert_torch", "absl", "jax"):
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flatbuffer = _flatbuffer(model, example[:1], calibration_inputs)
        staged.write_bytes(attach_metadata(flatbuffer, spec, name=f"AutoVision {fmt} classifier"))

    return write_atomically(path, fmt, write)


class LiteRTClassifier:
    """A ``.tflite`` classifier opened once in the LiteRT interpreter, so that many batches and a latency
    measurement share one interpreter rather than each building and allocating its own."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.source = self.interpreter.get_input_details()[0]
        self.target = self.interpreter.get_output_details()[0]

    def logits(self, inputs: FloatArray) -> FloatArray:
        """Logits of NCHW inputs, one image at a time; an int8 file's input and output are quantised and
        dequantised here with the scales the file declares, as an app would."""
        rows = []
        for image in inputs.transpose(0, 2, 3, 1):
            self.interpreter.set_tensor(self.source["index"], _quantize(image[None], self.source))
            self.interpreter.invoke()
            rows.append(_dequantize(self.interpreter.get_tensor(self.target["index"]), self.target))
        return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 0), dtype=np.float32)

    def latency(self, image: FloatArray, runs: int, warmup: int) -> tuple[float, ...]:
        """Milliseconds of each of ``runs`` timed invocations on one NCHW image, after ``warmup`` untimed."""
        from autovision.export.measure import timed_calls

        self.interpreter.set_tensor(self.source["index"], _quantize(image[:1].transpose(0, 2, 3, 1), self.source))
        return timed_calls(self.interpreter.invoke, runs, warmup)


def tflite_logits(path: Path, inputs: FloatArray, threads: int = 1) -> FloatArray:
    """Run a ``.tflite`` classifier with the LiteRT interpreter on NCHW inputs once (``LiteRTClassifier.logits``);
    ``LiteRTClassifier`` keeps the interpreter for more."""
    return LiteRTClassifier(path, threads).logits(inputs)


def _quantize(values: FloatArray, detail: dict[str, Any]) -> NDArray[Any]:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return values.astype(np.float32)
    scale, zero = float(detail["quantization"][0]), int(detail["quantization"][1])
    info = np.iinfo(dtype)
    quantized: NDArray[Any] = np.clip(np.round(values / scale + zero), info.min, info.max).astype(dtype)
    return quantized


def _dequantize(values: NDArray[Any], detail: dict[str, Any]) -> FloatArray:
    if np.dtype(detail["dtype"]) == np.float32:
        return values.astype(np.float32)
    scale, zero = float(detail["quantization"][0]), int(detail["quantization"][1])
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


def tflite_latency(path: Path, image: FloatArray, runs: int, warmup: int) -> tuple[float, ...]:
    """Milliseconds of each of ``runs`` timed invocations on one NCHW image, one thread, after ``warmup`` untimed."""
    return LiteRTClassifier(path).latency(image, runs, warmup)
