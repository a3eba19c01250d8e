"""The edge formats by name, and how a finished run's model becomes one again.

A run keeps its trained model as TorchScript (``model.pt``), not as Python code and
weights; ``torch.export`` cannot take a ScriptModule, so it is converted back to an
exported program (batch of one, as the edge formats take it) with torch's
TorchScript converter, and every edge format starts from that.
"""

from __future__ import annotations

import io
from enum import StrEnum
from pathlib import Path

import torch
from torch import nn

from autovision.contract.files import ModelCard
from autovision.contract.keys import COREML_PACKAGE, EXECUTORCH_DIR, TFLITE_FILE
from autovision.export.edge_files import EdgeInput


class EdgeFormat(StrEnum):
    """The edge formats ``autovision export`` writes."""

    TFLITE = "tflite"
    COREML = "coreml"
    EXECUTORCH = "executorch"


OUTPUT_NAMES = {
    EdgeFormat.TFLITE: TFLITE_FILE,
    EdgeFormat.COREML: COREML_PACKAGE,
    EdgeFormat.EXECUTORCH: EXECUTORCH_DIR,
}


def edge_input(card: ModelCard) -> EdgeInput:
    """What an edge file ships with, from the run's model card."""
    return EdgeInput(labels=tuple(card.labels), size=card.input_size, mean=card.mean, std=card.std)


class _ExportedModule(nn.Module):
    """An exported program's module behind a plain ``nn.Module``, so ``.eval()`` works (it has no train mode)."""

    def __init__(self, program: torch.export.ExportedProgram) -> None:
        super().__init__()
        # A bound method, not a submodule: .eval() must not reach the program's module.
        self._call = program.module().__call__

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The logits: edge formats keep scores only, a run's (logits, embedding) archive gives its first output
        (docs/edge.md)."""
        outputs = self._call(images)
        logits: torch.Tensor = outputs[0] if isinstance(outputs, tuple | list) else outputs
        return logits


def module_from_torchscript(data: bytes, size: int) -> nn.Module:
    """The run's TorchScript model as an exportable module for one ``size`` x ``size`` RGB image."""
    from torch._export.converter import TS2EPConverter

    scripted = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
    for parameter in scripted.parameters():  # inference only: constants, not leaves to train
        parameter.requires_grad_(False)
    program = TS2EPConverter(scripted, (torch.zeros(1, 3, size, size),)).convert()
    return _ExportedModule(program)


def export_edge(model: nn.Module, spec: EdgeInput, fmt: EdgeFormat, out_dir: Path, executorch_venv: Path) -> Path:
    """Write one edge format of ``model`` into ``out_dir``; ``EdgeExportError`` if it cannot express the model."""
    example = torch.zeros(1, 3, spec.size, spec.size)
    target = out_dir / OUTPUT_NAMES[fmt]
    if fmt is EdgeFormat.TFLITE:
        from autovision.export.tflite import export_tflite

        return export_tflite(model, example, spec, target)
    if fmt is EdgeFormat.COREML:
        from autovision.export.coreml import export_coreml

        return export_coreml(model, spec, target)
    from autovision.export.executorch_export import executorch_python, export_executorch

    return export_executorch(model, example, spec, target, executorch_python(executorch_venv))
