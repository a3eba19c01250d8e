"""All exports of one trained model, each fp32 one parity-checked on real test images.

Every export has two outputs, logits and the embedding its family defines
(``ModelFamily.with_embedding``); both are parity-checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.contract.keys import INT8_ONNX_FILE, ONNX_FILE, TORCHSCRIPT_FILE
from autovision.export.onnx_export import EMBEDDED_OUTPUTS, ONNX_OUTPUT, export_onnx, onnx_opset, onnx_outputs
from autovision.export.parity import ParityReport, compare_embeddings, compare_logits
from autovision.export.quantize import quantize_int8
from autovision.export.torchscript import embedded_outputs, export_torchscript, torchscript_outputs
from autovision.preprocess import FloatArray
from autovision.train.families.base import ModelFamily


@dataclass(frozen=True)
class ExportedModel:
    """Where the exports were written, their parity reports, the int8 model's test logits and the fp32 ONNX
    model's test embeddings (the drift reference's)."""

    onnx: Path
    torchscript: Path
    int8_onnx: Path
    onnx_opset: int
    parity: dict[str, ParityReport]
    int8_logits: FloatArray
    test_embeddings: FloatArray


def _parity(artifact: str, expected: dict[str, FloatArray], actual: dict[str, FloatArray]) -> list[ParityReport]:
    return [
        compare_logits(artifact, expected[ONNX_OUTPUT], actual[ONNX_OUTPUT]),
        compare_embeddings(artifact, expected[EMBEDDING_OUTPUT], actual[EMBEDDING_OUTPUT]),
    ]


def export_model(
    model: nn.Module,
    family: ModelFamily[Any],
    test_inputs: torch.Tensor,
    calibration_inputs: torch.Tensor,
    out_dir: Path,
) -> ExportedModel:
    """Write ONNX, TorchScript and int8 ONNX of ``model`` (of ``family``, which says what its embedding is)
    into out_dir; raise ExportParityError if an fp32 export's logits or embeddings differ.

    The ONNX check runs the whole test split in batches of up to 256 while the export
    was traced with a batch of 2, so it also proves the batch dimension is dynamic.
    """
    embedded = family.with_embedding(model.eval())
    expected = embedded_outputs(embedded, test_inputs)
    onnx_path = export_onnx(embedded, test_inputs, out_dir / ONNX_FILE, EMBEDDED_OUTPUTS)
    torchscript_path = export_torchscript(embedded, test_inputs, out_dir / TORCHSCRIPT_FILE)
    onnx_values = onnx_outputs(onnx_path, test_inputs.numpy())
    logits_onnx, embedding_onnx = _parity(ONNX_FILE, expected, onnx_values)
    logits_ts, embedding_ts = _parity(TORCHSCRIPT_FILE, expected, torchscript_outputs(torchscript_path, test_inputs))
    int8_path = quantize_int8(onnx_path, calibration_inputs.numpy(), out_dir / INT8_ONNX_FILE)
    return ExportedModel(
        onnx=onnx_path,
        torchscript=torchscript_path,
        int8_onnx=int8_path,
        onnx_opset=onnx_opset(onnx_path),
        parity={
            "onnx": logits_onnx,
            "torchscript": logits_ts,
            "onnxEmbedding": embedding_onnx,
            "torchscriptEmbedding": embedding_ts,
        },
        int8_logits=onnx_outputs(int8_path, test_inputs.numpy(), (ONNX_OUTPUT,))[ONNX_OUTPUT],
        test_embeddings=onnx_values[EMBEDDING_OUTPUT],
    )
