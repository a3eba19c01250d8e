"""export_model: three formats written and parity-checked against the trained model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autovision.export import ExportParityError, export_model
from autovision.export.bundle import ExportedModel
from autovision.export.onnx_export import export_onnx
from tests.support.export import small_model


@pytest.mark.training
def test_export_writes_three_formats_that_pass_parity(exported: ExportedModel) -> None:
    assert [path.name for path in (exported.onnx, exported.torchscript, exported.int8_onnx)] == [
        "model.onnx",
        "model.pt",
        "model.int8.onnx",
    ]
    for name in ("onnx", "torchscript"):
        report = exported.parity[name]
        assert report.passed, name
        assert report.images == 30
        assert report.max_abs_diff <= 1e-4
        assert report.to_json()["top1Identical"] is True
    assert exported.onnx_opset >= 17
    assert exported.int8_logits.shape == (30, 10)


@pytest.mark.training
def test_export_model_raises_when_the_export_is_not_the_trained_model(
    tmp_path: Path, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken exporter (here: one that exports another model) stops export_model before int8."""
    from autovision.export import bundle

    def export_wrong_model(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
        return export_onnx(small_model(1), example, path)

    monkeypatch.setattr(bundle, "export_onnx", export_wrong_model)

    with pytest.raises(ExportParityError, match="top-1 label differs on"):
        export_model(small_model(0), images[:10], images[30:], tmp_path)
    assert not (tmp_path / "model.int8.onnx").exists()
