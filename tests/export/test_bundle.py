"""export_model: three formats written and parity-checked against the trained model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.export import ExportParityError, export_model
from autovision.export.bundle import ExportedModel
from autovision.export.onnx_export import ONNX_OUTPUT, export_onnx, onnx_outputs
from autovision.train.families import family_of
from tests.support.export import ARCHITECTURE, small_model
from tests.support.memory import BUDGET_BYTES, ScaleDatasets, assert_bounded, peaks, version_args

# The tiny CNN's last stage is 4 * 2 channels wide: its embedding's size.
EMBEDDING_SIZE = 8


@pytest.mark.training
def test_export_writes_three_formats_that_pass_parity(exported: ExportedModel) -> None:
    assert [path.name for path in (exported.onnx, exported.torchscript, exported.int8_onnx)] == [
        "model.onnx",
        "model.pt",
        "model.int8.onnx",
    ]
    for name in ("onnx", "torchscript", "onnxEmbedding", "torchscriptEmbedding"):
        report = exported.parity[name]
        assert report.passed, name
        assert report.images == 30
        assert report.max_abs_diff <= 1e-4
        assert report.to_json()["top1Identical"] is True
    assert exported.onnx_opset >= 17
    assert exported.int8_logits.shape == (30, 10)
    assert exported.test_embeddings.shape == (30, EMBEDDING_SIZE)


@pytest.mark.training
def test_every_onnx_export_outputs_logits_then_the_embedding(exported: ExportedModel, images: torch.Tensor) -> None:
    for path in (exported.onnx, exported.int8_onnx):
        assert [output.name for output in onnx.load(str(path)).graph.output] == [ONNX_OUTPUT, EMBEDDING_OUTPUT]
    int8 = onnx_outputs(exported.int8_onnx, images[:30].numpy())
    assert int8[EMBEDDING_OUTPUT].shape == (30, EMBEDDING_SIZE)
    # int8 is not parity-checked, but its embedding must still be the same layer's, roughly.
    np.testing.assert_allclose(int8[EMBEDDING_OUTPUT], exported.test_embeddings, atol=0.2)


@pytest.mark.training
def test_export_model_raises_when_the_export_is_not_the_trained_model(
    tmp_path: Path, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken exporter (here: one that exports another model) stops export_model before int8."""
    from autovision.export import bundle

    family = family_of(ARCHITECTURE)

    def export_wrong_model(model: torch.nn.Module, example: torch.Tensor, path: Path, names: Sequence[str]) -> Path:
        return export_onnx(family.with_embedding(small_model(1)), example, path, names)

    monkeypatch.setattr(bundle, "export_onnx", export_wrong_model)

    with pytest.raises(ExportParityError, match="top-1 label differs on"):
        export_model(small_model(0), family, [images[:10]], [images[30:]], tmp_path)
    assert not (tmp_path / "model.int8.onnx").exists()


@pytest.mark.training
def test_export_peak_memory_does_not_grow_with_the_test_split(scale_datasets: ScaleDatasets, tmp_path: Path) -> None:
    """The parity checks and int8 calibration read the test and validation splits a budgeted batch at a time."""
    out = lambda size: [*version_args(scale_datasets, str(BUDGET_BYTES))(size), str(tmp_path / str(size))]  # noqa: E731
    assert_bounded("export", peaks("export", out))
