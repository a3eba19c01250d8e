"""Export: ONNX (dynamic batch), TorchScript and int8 ONNX, parity-checked at export time.

``card`` builds the model card (model.json) that describes what was exported.

Names are imported lazily: ``autovision.export.layout`` (the model directory's file
names, read by the CLI) must not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autovision.export.bundle import ExportedModel as ExportedModel
    from autovision.export.bundle import export_model as export_model
    from autovision.export.onnx_export import export_onnx as export_onnx
    from autovision.export.onnx_export import onnx_logits as onnx_logits
    from autovision.export.parity import PARITY_TOLERANCE as PARITY_TOLERANCE
    from autovision.export.parity import ExportParityError as ExportParityError
    from autovision.export.parity import ParityReport as ParityReport
    from autovision.export.parity import compare_logits as compare_logits
    from autovision.export.quantize import quantize_int8 as quantize_int8
    from autovision.export.torchscript import export_torchscript as export_torchscript

_EXPORTS = {
    "ExportedModel": "bundle",
    "export_model": "bundle",
    "export_onnx": "onnx_export",
    "onnx_logits": "onnx_export",
    "PARITY_TOLERANCE": "parity",
    "ExportParityError": "parity",
    "ParityReport": "parity",
    "compare_logits": "parity",
    "quantize_int8": "quantize",
    "export_torchscript": "torchscript",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
