"""The parity check every export must pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autovision.export import ExportParityError, compare_logits, onnx_logits
from autovision.export.bundle import ExportedModel
from autovision.export.parity import ParityCheck, ParityReport
from autovision.export.torchscript import torchscript_logits
from autovision.preprocess import FloatArray
from autovision.train.trainer import predict_logits
from tests.support.export import small_model


@pytest.mark.training
def test_parity_fails_loudly_on_a_different_model(exported: ExportedModel, images: torch.Tensor) -> None:
    other = predict_logits(small_model(1), images[:30])

    with pytest.raises(ExportParityError, match=r"model\.onnx differs from the trained model on 30 test images"):
        compare_logits("model.onnx", other, onnx_logits(exported.onnx, images[:30].numpy()))
    with pytest.raises(ExportParityError, match=r"model\.pt differs"):
        compare_logits("model.pt", other, torchscript_logits(exported.torchscript, images[:30]))


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


def _embedding_parity(expected: FloatArray, actual: FloatArray) -> ParityReport:
    check = ParityCheck("model.onnx", embeddings=True)
    check.add(expected, actual)
    return check.report()


def test_embedding_parity_scales_its_tolerance_and_ignores_top1() -> None:
    expected = np.array([[100.0, 0.0], [0.0, 1.0]], dtype=np.float32)

    assert _embedding_parity(expected, expected + np.float32(5e-3)).passed
    with pytest.raises(ExportParityError, match=r"model\.onnx's embeddings differ"):
        _embedding_parity(expected, expected + np.float32(0.1))
    with pytest.raises(ExportParityError, match="shape"):
        _embedding_parity(expected, expected[:, :1])
