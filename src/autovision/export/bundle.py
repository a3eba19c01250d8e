"""All exports of one trained model, each fp32 one parity-checked on real test images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from autovision.contract.keys import INT8_ONNX_FILE, ONNX_FILE, TORCHSCRIPT_FILE
from autovision.export.onnx_export import export_onnx, onnx_logits, onnx_opset
from autovision.export.parity import ParityReport, compare_logits
from autovision.export.quantize import quantize_int8
from autovision.export.torchscript import export_torchscript, torchscript_logits
from autovision.preprocess import FloatArray
from autovision.train.trainer import predict_logits


@dataclass(frozen=True)
class ExportedModel:
    """Where the exports were written, their parity reports, and the int8 model's test logits."""

    onnx: Path
    torchscript: Path
    int8_onnx: Path
    onnx_opset: int
    parity: dict[str, ParityReport]
    int8_logits: FloatArray


def export_model(
    model: nn.Module, test_inputs: torch.Tensor, calibration_inputs: torch.Tensor, out_dir: Path
) -> ExportedModel:
    """Write ONNX, TorchScript and int8 ONNX into out_dir; raise ExportParityError if an fp32 export differs.

    The ONNX check runs the whole test split in batches of up to 256 while the export
    was traced with a batch of 2, so it also proves the batch dimension is dynamic.
    """
    expected = predict_logits(model, test_inputs)
    onnx_path = export_onnx(model, test_inputs, out_dir / ONNX_FILE)
    torchscript_path = export_torchscript(model, test_inputs, out_dir / TORCHSCRIPT_FILE)
    parity = {
        "onnx": compare_logits(ONNX_FILE, expected, onnx_logits(onnx_path, test_inputs.numpy())),
        "torchscript": compare_logits(TORCHSCRIPT_FILE, expected, torchscript_logits(torchscript_path, test_inputs)),
    }
    int8_path = quantize_int8(onnx_path, calibration_inputs.numpy(), out_dir / INT8_ONNX_FILE)
    return ExportedModel(
        onnx=onnx_path,
        torchscript=torchscript_path,
        int8_onnx=int8_path,
        onnx_opset=onnx_opset(onnx_path),
        parity=parity,
        int8_logits=onnx_logits(int8_path, test_inputs.numpy()),
    )
