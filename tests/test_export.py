"""Exports and their parity check, on real images (the bundled digits) and small models."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from autovision.data.digits import digits_zip_bytes
from autovision.export import ExportParityError, compare_logits, export_model, onnx_logits, quantize_int8
from autovision.export.bundle import ExportedModel
from autovision.export.layout import ModelNotFoundError, locate_model
from autovision.export.onnx_export import export_onnx
from autovision.export.torchscript import export_torchscript, torchscript_logits
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.settings import Settings
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn
from autovision.train.trainer import predict_logits

ARCHITECTURE = ResidualCNNConfig(width=4, stages=2)


def digit_images(count: int) -> torch.Tensor:
    """The first ``count`` bundled digits, preprocessed as training would (16x16)."""
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        images = [archive.read(name) for name in sorted(archive.namelist())[:count]]
    return torch.from_numpy(preprocess_batch(images, PreprocessConfig(size=16)))


def small_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_residual_cnn(ARCHITECTURE, num_classes=10).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return digit_images(40)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, images: torch.Tensor) -> ExportedModel:
    return export_model(small_model(0), images[:30], images[30:], tmp_path_factory.mktemp("export"))


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
def test_onnx_batch_dimension_is_dynamic(exported: ExportedModel, images: torch.Tensor) -> None:
    graph = onnx.load(str(exported.onnx)).graph
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param, "the batch dimension must be symbolic"
    expected = predict_logits(small_model(0), images)
    for size in (1, 3, 40):
        np.testing.assert_allclose(onnx_logits(exported.onnx, images[:size].numpy()), expected[:size], atol=1e-4)


@pytest.mark.training
def test_int8_model_is_quantised_and_close(exported: ExportedModel, images: torch.Tensor) -> None:
    operators = {node.op_type for node in onnx.load(str(exported.int8_onnx)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operators
    fp32 = onnx_logits(exported.onnx, images[:30].numpy())
    assert np.abs(exported.int8_logits - fp32).max() < 0.5, "int8 stays near fp32 on calibrated data"


@pytest.mark.training
def test_parity_fails_loudly_on_a_different_model(exported: ExportedModel, images: torch.Tensor) -> None:
    other = predict_logits(small_model(1), images[:30])

    with pytest.raises(ExportParityError, match=r"model\.onnx differs from the trained model on 30 test images"):
        compare_logits("model.onnx", other, onnx_logits(exported.onnx, images[:30].numpy()))
    with pytest.raises(ExportParityError, match=r"model\.pt differs"):
        compare_logits("model.pt", other, torchscript_logits(exported.torchscript, images[:30]))


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


def test_identical_top1_is_required_even_within_tolerance() -> None:
    expected = np.array([[1.0, 1.00005], [2.0, 0.0]], dtype=np.float32)
    swapped = np.array([[1.00005, 1.0], [2.0, 0.0]], dtype=np.float32)

    with pytest.raises(ExportParityError, match=r"top-1 label differs on 1 images"):
        compare_logits("model.onnx", expected, swapped)
    with pytest.raises(ExportParityError, match="shape"):
        compare_logits("model.onnx", expected, expected[:1])
    with pytest.raises(ExportParityError, match="on 0 test images"):
        compare_logits("model.onnx", expected[:0], expected[:0])
    assert compare_logits("model.onnx", expected, expected + 5e-5).max_abs_diff == pytest.approx(5e-5, abs=1e-6)


@pytest.mark.training
def test_torchscript_runs_any_batch(tmp_path: Path, images: torch.Tensor) -> None:
    model = small_model(2)
    path = export_torchscript(model, images[:2], tmp_path / "model.pt")

    np.testing.assert_array_equal(torchscript_logits(path, images[:7]), predict_logits(model, images[:7]))


@pytest.mark.training
def test_quantisation_needs_calibration_images(exported: ExportedModel, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration images"):
        quantize_int8(exported.onnx, np.zeros((0, 3, 16, 16), np.float32), tmp_path / "int8.onnx")


def test_locate_model_accepts_a_run_a_model_directory_or_a_key(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path}")
    storage.write_json("runs/ns/job/u1/model/model.json", {})
    settings = Settings(storage_root=f"file://{tmp_path}")

    by_key = locate_model("runs/ns/job/u1", settings)
    assert (by_key.prefix, by_key.key("model.onnx")) == ("runs/ns/job/u1/model", "runs/ns/job/u1/model/model.onnx")
    assert locate_model(f"file://{tmp_path}/runs/ns/job/u1", settings).uri() == storage.uri("runs/ns/job/u1/model")
    assert locate_model(str(tmp_path / "runs/ns/job/u1/model"), settings).prefix == ""
    storage.write_bytes("runs/ns/job/u2/model/model.onnx", b"")  # unfinished: no model.json
    with pytest.raises(ModelNotFoundError, match=r"u2 holds no finished model"):
        locate_model("runs/ns/job/u2", settings)
