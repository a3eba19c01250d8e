"""ONNX export with a dynamic batch dimension (torch.onnx's dynamo exporter) and ONNX Runtime inference."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from autovision.preprocess import FloatArray

ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
# Large enough for any server batch; torch.export needs a finite bound.
MAX_BATCH = 4096
INFERENCE_BATCH = 256


def export_onnx(model: nn.Module, example_inputs: torch.Tensor, path: Path) -> Path:
    """Export with a dynamic batch dimension (input ``input``, output ``logits``)."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    model.eval()
    # Two copies of one real image: a batch of 1 would let torch.export specialise the batch size.
    example = example_inputs[:1].repeat(2, 1, 1, 1)
    with warnings.catch_warnings():
        # torch.export's internals warn about their own deprecations; nothing for users to act on.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        program = _export_program(model, example)
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return path


def _export_program(model: nn.Module, example: torch.Tensor) -> Any:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
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
    source = str(model) if isinstance(model, Path) else model
    session = onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])
    batches = [
        session.run([ONNX_OUTPUT], {ONNX_INPUT: inputs[start : start + batch_size].astype(np.float32)})[0]
        for start in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(batches).astype(np.float32) if batches else np.zeros((0, 0), dtype=np.float32)
