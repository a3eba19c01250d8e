"""Export a trained model to ONNX and prove the export computes the same function.

The parity check runs on real test images at export time; an export that does not
match the trained model fails loudly instead of being served.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from torch import nn

from autovision.preprocess import FloatArray
from autovision.train.trainer import predict_logits

PARITY_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    """The exported model's outputs differ from the trained model's."""


def export_onnx(model: nn.Module, example_inputs: torch.Tensor, path: Path) -> Path:
    """Export with a dynamic batch dimension (input ``input``, output ``logits``)."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    model.eval()
    with warnings.catch_warnings():
        # torch.export's internals warn about their own deprecations; nothing for users to act on.
        warnings.simplefilter("ignore", FutureWarning)
        program = _export_program(model, example_inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


def _export_program(model: nn.Module, example_inputs: torch.Tensor) -> Any:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model,
        (example_inputs[:2],),
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    return program


def onnx_logits(path: Path, inputs: FloatArray) -> FloatArray:
    """Run an ONNX classifier on CPU with onnxruntime."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["logits"], {"input": inputs.astype(np.float32)})[0])


def check_parity(
    model: nn.Module, path: Path, inputs: torch.Tensor, tolerance: float = PARITY_TOLERANCE
) -> dict[str, Any]:
    """Compare the ONNX file with the trained model on real images; raise on mismatch."""
    expected = predict_logits(model, inputs)
    actual = onnx_logits(path, inputs.numpy())
    max_abs_diff = float(np.abs(expected - actual).max()) if len(inputs) else 0.0
    top1_agree = bool((expected.argmax(axis=1) == actual.argmax(axis=1)).all())
    report = {
        "images": len(inputs),
        "maxAbsDiff": max_abs_diff,
        "top1Identical": top1_agree,
        "tolerance": tolerance,
    }
    if max_abs_diff > tolerance or not top1_agree:
        raise ExportParityError(f"ONNX export differs from the trained model: {report}")
    return report
