"""Per-format figures: top-1 against the labels, agreement against the PyTorch model, latency quantiles."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.evaluate.formats import FormatRun, format_figures

TRUTH = np.array([[True, False], [False, True], [False, True], [True, False]])
PYTORCH = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]], dtype=np.float32)  # 3 of 4 right


def test_top1_agreement_and_latency_quantiles() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)  # 3 right, 2 agree
    run = FormatRun("tflite", "model.tflite", 1234, logits, latency_ms=tuple(float(ms) for ms in range(1, 11)))

    figures = format_figures(run, TRUTH, PYTORCH).to_json()

    assert figures["format"] == "tflite"
    assert figures["bytes"] == 1234
    assert figures["predictionsChecked"] is True
    assert figures["top1"] == pytest.approx(0.75)
    assert figures["top1Agreement"] == pytest.approx(0.5)
    assert figures["latencyMs"] == {"median": pytest.approx(5.5), "p90": pytest.approx(9.1), "runs": 10}


def test_a_file_not_run_here_has_its_size_and_no_figures() -> None:
    figures = format_figures(FormatRun("coreml", "model.mlpackage", 99, None), TRUTH, PYTORCH).to_json()

    assert figures["predictionsChecked"] is False
    assert figures["bytes"] == 99
    assert figures["latencyMs"] is figures["top1"] is figures["top1Agreement"] is None


def test_scores_of_another_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="onnx returns"):
        format_figures(FormatRun("onnx", "model.onnx", 1, PYTORCH[:, :1]), TRUTH, PYTORCH)
