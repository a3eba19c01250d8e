"""LiteRT exports run by the LiteRT interpreter: fp32 parity, int8 calibrated on training images, clean failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")

from autovision.export import tflite
from autovision.export.edge_files import EdgeExportError
from autovision.export.tflite import calibration_batches, export_tflite, tflite_logits
from autovision.train.trainer import predict_logits
from tests.support.export import small_model
from tests.support.tflite import DIGIT_SPEC

pytestmark = pytest.mark.training


def test_fp32_tflite_agrees_with_pytorch_in_the_interpreter(tflite_fp32: Path, images: torch.Tensor) -> None:
    expected = predict_logits(small_model(0), images)
    actual = tflite_logits(tflite_fp32, images.numpy())
    assert np.abs(expected - actual).max() < 1e-4
    assert (expected.argmax(1) == actual.argmax(1)).all()


def test_int8_tflite_is_full_integer_and_calibrated_on_the_training_images_given(
    tmp_path: Path, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[torch.Tensor] = []

    def recording(calibration: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batches = calibration_batches(calibration)
        seen.extend(batches)
        return batches

    training, test = images[:20], images[20:]
    monkeypatch.setattr(tflite, "calibration_batches", recording)
    path = export_tflite(small_model(0), test, DIGIT_SPEC, tmp_path / "int8.tflite", calibration_inputs=training)
    monkeypatch.undo()
    calibrated = torch.cat(seen).permute(0, 3, 1, 2)
    assert torch.equal(calibrated, training)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    expected = predict_logits(small_model(0), test)
    assert tflite_logits(path, test.numpy()).shape == expected.shape


class _Unlowerable(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        singular_values: torch.Tensor = torch.linalg.svd(images.flatten(1)[:, :4].reshape(-1, 2, 2)).S
        return singular_values.flatten(1)


def test_an_op_the_converter_cannot_lower_fails_alone_and_leaves_nothing(tmp_path: Path, images: torch.Tensor) -> None:
    with pytest.raises(EdgeExportError, match=r"TFLite export failed at aten\.\w+"):
        export_tflite(_Unlowerable(), images[:2], DIGIT_SPEC, tmp_path / "model.tflite")
    assert list(tmp_path.iterdir()) == []
