"""All exports of one trained model, each fp32 one parity-checked on real test images.

Every export has two outputs, logits and the embedding its family defines
(``ModelFamily.with_embedding``); both are parity-checked.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.contract.keys import INT8_ONNX_FILE, ONNX_FILE, TORCHSCRIPT_FILE
from autovision.export.onnx_export import (
    EMBEDDED_OUTPUTS,
    ONNX_OUTPUT,
    export_onnx,
    onnx_opset,
    onnx_session,
    session_outputs,
)
from autovision.export.parity import ParityCheck, ParityReport
from autovision.export.quantize import quantize_int8
from autovision.export.torchscript import embedded_outputs, export_torchscript, load_torchscript
from autovision.monitor.reference import MAX_REFERENCE_IMAGES
from autovision.preprocess import FloatArray
from autovision.train.families.base import ModelFamily


@dataclass(frozen=True)
class ExportedModel:
    """Where the exports were written, their parity reports, the int8 model's test logits and the fp32 ONNX
    model's embeddings of the first test images (the drift reference's)."""

    onnx: Path
    torchscript: Path
    int8_onnx: Path
    onnx_opset: int
    parity: dict[str, ParityReport]
    int8_logits: FloatArray
    test_embeddings: FloatArray


def export_model(
    model: nn.Module,
    family: ModelFamily[Any],
    test_inputs: Iterable[torch.Tensor],
    calibration_inputs: Iterable[torch.Tensor],
    out_dir: Path,
    *,
    reference_images: int = MAX_REFERENCE_IMAGES,
) -> ExportedModel:
    """Write ONNX, TorchScript and int8 ONNX of ``model`` (of ``family``, which says what its embedding is)
    into out_dir; raise ExportParityError if an fp32 export's logits or embeddings differ (then no int8 file).

    ``test_inputs`` and ``calibration_inputs`` are batches of model input (``[tensor]`` for one tensor);
    ``test_inputs`` is read twice (its first batch is the export's example), so it must be re-readable,
    like ``SplitImages.inputs``. The test split is checked batch by batch, each batch run through every
    export, and only per-image logits (int8) and the first ``reference_images`` embeddings (the drift
    reference's) are kept. The ONNX check runs batches of up to 256 while the export was traced with a batch
    of 2, so it also proves the batch dimension is dynamic.
    """
    if isinstance(test_inputs, torch.Tensor) or isinstance(calibration_inputs, torch.Tensor):
        raise TypeError("export_model takes batches of inputs: pass [tensor] for one tensor")
    example = next(iter(test_inputs), None)
    if example is None:
        raise ValueError("the export's parity checks need test images; the test split is empty")
    embedded = family.with_embedding(model.eval())
    onnx_path = export_onnx(embedded, example, out_dir / ONNX_FILE, EMBEDDED_OUTPUTS)
    torchscript_path = export_torchscript(embedded, example, out_dir / TORCHSCRIPT_FILE)
    with tempfile.TemporaryDirectory(prefix="autovision-int8-") as unchecked:
        int8_path = quantize_int8(
            onnx_path, (batch.numpy() for batch in calibration_inputs), Path(unchecked) / INT8_ONNX_FILE
        )
        checked = _check_batches(
            embedded,
            onnx_path=onnx_path,
            torchscript_path=torchscript_path,
            int8_path=int8_path,
            test_inputs=test_inputs,
            reference_images=reference_images,
        )
        int8_path = Path(shutil.move(int8_path, out_dir / INT8_ONNX_FILE))
    return ExportedModel(
        onnx=onnx_path,
        torchscript=torchscript_path,
        int8_onnx=int8_path,
        onnx_opset=onnx_opset(onnx_path),
        parity={name: check.report() for name, check in checked.parity.items()},
        int8_logits=checked.int8_logits,
        test_embeddings=checked.embeddings,
    )


@dataclass(frozen=True)
class _Checked:
    parity: dict[str, ParityCheck]
    int8_logits: FloatArray
    embeddings: FloatArray


def _check_batches(
    embedded: nn.Module,
    *,
    onnx_path: Path,
    torchscript_path: Path,
    int8_path: Path,
    test_inputs: Iterable[torch.Tensor],
    reference_images: int,
) -> _Checked:
    """Every test batch through the trained model and each export: parity tallies, int8 logits, the first
    embeddings; raise ExportParityError once all batches are in if an fp32 export differs."""
    parity = {
        "onnx": ParityCheck(ONNX_FILE),
        "torchscript": ParityCheck(TORCHSCRIPT_FILE),
        "onnxEmbedding": ParityCheck(ONNX_FILE, embeddings=True),
        "torchscriptEmbedding": ParityCheck(TORCHSCRIPT_FILE, embeddings=True),
    }
    onnx, int8, scripted = onnx_session(onnx_path), onnx_session(int8_path), load_torchscript(torchscript_path)
    int8_logits: list[FloatArray] = []
    embeddings: list[FloatArray] = []
    kept = 0
    for batch in test_inputs:
        expected = embedded_outputs(embedded, batch)
        inputs = batch.numpy()
        for name, actual in (
            ("onnx", session_outputs(onnx, inputs)),
            ("torchscript", embedded_outputs(scripted, batch)),
        ):
            parity[name].add(expected[ONNX_OUTPUT], actual[ONNX_OUTPUT])
            parity[f"{name}Embedding"].add(expected[EMBEDDING_OUTPUT], actual[EMBEDDING_OUTPUT])
            if name == "onnx" and kept < reference_images:
                embeddings.append(actual[EMBEDDING_OUTPUT][: reference_images - kept])
                kept += len(embeddings[-1])
        int8_logits.append(session_outputs(int8, inputs, (ONNX_OUTPUT,))[ONNX_OUTPUT])
    for check in parity.values():
        check.report()
    return _Checked(parity, np.concatenate(int8_logits), np.concatenate(embeddings))
