"""TorchScript export, for LibTorch (C++) and Triton's PyTorch backend.

PyTorch 2.13 marks ``torch.jit`` deprecated in favour of torch.export, but
TorchScript is still what LibTorch and Triton's ``pytorch_libtorch`` platform load,
so it is exported by tracing (the model families have no data-dependent control
flow) and held to the same parity check as ONNX.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from autovision.preprocess import FloatArray
from autovision.train.trainer import predict_logits


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


def torchscript_logits(path: Path, inputs: torch.Tensor) -> FloatArray:
    """Load a TorchScript archive on CPU and compute logits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
    return predict_logits(loaded, inputs)
