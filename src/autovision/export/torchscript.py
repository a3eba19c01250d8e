"""TorchScript export, for LibTorch (C++) and Triton's PyTorch backend.

PyTorch 2.13 marks ``torch.jit`` deprecated in favour of torch.export, but
TorchScript is still what LibTorch and Triton's ``pytorch_libtorch`` platform load,
so it is exported by tracing (the model families have no data-dependent control
flow) and held to the same parity check as ONNX. A run's archive returns
(logits, embedding), like its ONNX model; ``logits_module`` finds the classifier in it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autovision.export.onnx_export import EMBEDDED_OUTPUTS, ONNX_OUTPUT
from autovision.preprocess import FloatArray
from autovision.train.images import PREDICT_BATCH


def export_torchscript(model: nn.Module, example_inputs: torch.Tensor, path: Path) -> Path:
    """Trace the model in eval mode and save it as a TorchScript archive."""
    model.eval()
    example = example_inputs[:1].repeat(2, 1, 1, 1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return path


def load_torchscript(path: Path) -> nn.Module:
    """A TorchScript archive on CPU."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded: nn.Module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return loaded


def embedded_outputs(model: nn.Module, inputs: torch.Tensor, batch_size: int = PREDICT_BATCH) -> dict[str, FloatArray]:
    """Logits and embeddings of a model that returns both (eager or TorchScript), keyed as the ONNX outputs:
    what the parity checks compare export by export."""
    model.eval()
    with torch.inference_mode():
        batches = [model(inputs[start : start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return {
        name: torch.cat([batch[index] for batch in batches]).float().numpy()
        if batches
        else np.zeros((0, 0), dtype=np.float32)
        for index, name in enumerate(EMBEDDED_OUTPUTS)
    }


def torchscript_outputs(path: Path, inputs: torch.Tensor) -> dict[str, FloatArray]:
    """Load a run's TorchScript archive (logits and embedding) on CPU and compute both."""
    return embedded_outputs(load_torchscript(path), inputs)


def torchscript_logits(path: Path, inputs: torch.Tensor) -> FloatArray:
    """Load a run's TorchScript archive on CPU and compute logits."""
    return torchscript_outputs(path, inputs)[ONNX_OUTPUT]
