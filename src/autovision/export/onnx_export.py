"""ONNX export with a dynamic batch dimension (torch.onnx's dynamo exporter) and ONNX Runtime inference.

A run's ONNX model has two outputs: ``logits`` and the embedding (``EMBEDDING_OUTPUT``),
the penultimate layer that drift monitoring compares; a model exported before
embeddings were has ``logits`` only, and readers of logits work with both.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.preprocess import FloatArray

ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
# The outputs of a model built by a family's ``with_embedding``, in its forward's order.
EMBEDDED_OUTPUTS = (ONNX_OUTPUT, EMBEDDING_OUTPUT)
# Large enough for any server batch; torch.export needs a finite bound.
MAX_BATCH = 4096
INFERENCE_BATCH = 256


def export_onnx(
    model: nn.Module, example_inputs: torch.Tensor, path: Path, output_names: Sequence[str] = (ONNX_OUTPUT,)
) -> Path:
    """Export with a dynamic batch dimension: input ``input``, outputs named in the forward's order (by default
    one, ``logits``; ``EMBEDDED_OUTPUTS`` for a model with its embedding)."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    model.eval()
    # Two copies of one real image: a batch of 1 would let torch.export specialise the batch size.
    example = example_inputs[:1].repeat(2, 1, 1, 1)
    with warnings.catch_warnings():
        # torch.export's internals warn about their own deprecations; nothing for users to act on.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        program = _export_program(model, example, list(output_names))
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


def _export_program(model: nn.Module, example: torch.Tensor, output_names: list[str]) -> Any:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=[ONNX_INPUT],
        output_names=output_names,
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    return program


def onnx_opset(path: Path) -> int:
    """The default-domain opset of an ONNX file, for the model card (runtimes need at least this)."""
    model = onnx.load(str(path), load_external_data=False)
    return next(int(entry.version) for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def onnx_logits(model: Path | bytes, inputs: FloatArray, batch_size: int = INFERENCE_BATCH) -> FloatArray:
    """Run an ONNX classifier on CPU with ONNX Runtime, in batches of ``batch_size``."""
    return onnx_outputs(model, inputs, (ONNX_OUTPUT,), batch_size)[ONNX_OUTPUT]


def onnx_outputs(
    model: Path | bytes, inputs: FloatArray, names: Sequence[str] = EMBEDDED_OUTPUTS, batch_size: int = INFERENCE_BATCH
) -> dict[str, FloatArray]:
    """The named outputs of an ONNX model on CPU with ONNX Runtime, in batches of ``batch_size``: how parity
    checks and the drift reference read logits and embeddings from the very file served."""
    return session_outputs(onnx_session(model), inputs, names, batch_size)


def onnx_session(model: Path | bytes) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session on CPU, made once for a file read batch by batch."""
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])


def session_outputs(
    session: onnxruntime.InferenceSession,
    inputs: FloatArray,
    names: Sequence[str] = EMBEDDED_OUTPUTS,
    batch_size: int = INFERENCE_BATCH,
) -> dict[str, FloatArray]:
    """The named outputs of a session on ``inputs``, run ``batch_size`` images at a time."""
    batches = [
        session.run(list(names), {ONNX_INPUT: inputs[start : start + batch_size].astype(np.float32)})
        for start in range(0, len(inputs), batch_size)
    ]
    return {
        name: np.concatenate([batch[index] for batch in batches]).astype(np.float32)
        if batches
        else np.zeros((0, 0), dtype=np.float32)
        for index, name in enumerate(names)
    }
