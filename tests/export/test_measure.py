"""Measuring exports: a fixed number of timed calls after untimed warm-up ones, sizes of files and packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.export import onnx_logits
from autovision.export.bundle import ExportedModel
from autovision.export.measure import LATENCY_RUNS, run_edge, run_onnx, size_bytes, timed_calls
from autovision.export.tflite import tflite_logits
from autovision.resources import EdgeFormat


def test_timed_calls_times_only_the_runs_after_the_warm_up() -> None:
    calls: list[int] = []

    times = timed_calls(lambda: calls.append(1), runs=7, warmup=3)

    assert len(calls) == 10
    assert len(times) == 7
    assert all(ms >= 0 for ms in times)


def test_size_of_a_file_and_of_a_package_directory(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"x" * 10)
    package = tmp_path / "executorch"
    (package / "sub").mkdir(parents=True)
    (package / "model.pte").write_bytes(b"x" * 5)
    (package / "sub" / "labels.txt").write_bytes(b"x" * 3)

    assert size_bytes(tmp_path / "model.tflite") == 10
    assert size_bytes(package) == 8


def test_a_core_ml_package_is_measured_by_size_only(tmp_path: Path) -> None:
    package = tmp_path / "model.mlpackage"
    package.mkdir()
    (package / "Manifest.json").write_bytes(b"x" * 4)

    run = run_edge(EdgeFormat.COREML, package, [np.zeros((2, 3, 8, 8), dtype=np.float32)], tmp_path / "no-venv")

    assert (run.name, run.file, run.size_bytes, run.logits, run.latency_ms) == (
        "coreml",
        "model.mlpackage",
        4,
        None,
        (),
    )


@pytest.mark.training
def test_an_onnx_file_is_run_batch_by_batch_reading_its_inputs_once(
    exported: ExportedModel, images: torch.Tensor
) -> None:
    inputs = images[:30].numpy()

    run = run_onnx("onnx", exported.onnx, iter([inputs[:7], inputs[7:30]]))

    assert run.logits is not None
    np.testing.assert_allclose(run.logits, onnx_logits(exported.onnx, inputs), atol=1e-5)
    assert len(run.latency_ms) == LATENCY_RUNS


@pytest.mark.training
def test_a_tflite_file_is_run_on_every_batch_by_one_interpreter(
    tflite_fp32: Path, images: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ai_edge_litert import interpreter

    built: list[Path] = []

    class CountedInterpreter(interpreter.Interpreter):  # type: ignore[misc]
        def __init__(self, model_path: str, num_threads: int) -> None:
            built.append(Path(model_path))
            super().__init__(model_path=model_path, num_threads=num_threads)

    monkeypatch.setattr(interpreter, "Interpreter", CountedInterpreter)
    inputs = images[:10].numpy()

    run = run_edge(EdgeFormat.TFLITE, tflite_fp32, iter([inputs[:4], inputs[4:]]), Path("no-venv"))

    assert built == [tflite_fp32]
    assert run.logits is not None
    np.testing.assert_allclose(run.logits, tflite_logits(tflite_fp32, inputs), atol=1e-5)
    assert len(run.latency_ms) == LATENCY_RUNS
