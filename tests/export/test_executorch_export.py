"""ExecuTorch: the ``.pte`` file runs in the ExecuTorch runtime and agrees with PyTorch; failures leave nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autovision.export.edge_files import EdgeExportError
from autovision.export.executorch_export import (
    LABELS_FILE,
    PREPROCESSING_FILE,
    PTE_FILE,
    executorch_python,
    executorch_run,
    export_executorch,
)
from autovision.train.trainer import predict_logits
from tests.support.export import small_model
from tests.support.tflite import DIGIT_SPEC

pytestmark = pytest.mark.training

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def python() -> Path:
    try:
        return executorch_python(REPO / ".venv-executorch")
    except FileNotFoundError as missing:
        pytest.skip(str(missing))


def test_the_pte_file_agrees_with_pytorch_in_one_executorch_worker_for_every_batch(
    tmp_path: Path, images: torch.Tensor, python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = export_executorch(small_model(0), images, DIGIT_SPEC, tmp_path / "executorch", python)
    assert sorted(p.name for p in path.iterdir()) == sorted([PTE_FILE, LABELS_FILE, PREPROCESSING_FILE])
    assert (path / LABELS_FILE).read_text().splitlines() == list(DIGIT_SPEC.labels)
    expected = predict_logits(small_model(0), images)
    commands: list[str] = []

    class CountedPopen(subprocess.Popen[bytes]):
        def __init__(self, command: list[str], **kwargs: Any) -> None:
            commands.append(command[3])
            super().__init__(command, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", CountedPopen)
    inputs = images.numpy()

    actual, times = executorch_run(path, iter([inputs[:7], inputs[7:]]), python, runs=3, warmup=1)

    assert commands == ["run"]
    assert np.abs(expected - actual).max() < 1e-4
    assert (expected.argmax(1) == actual.argmax(1)).all()
    assert len(times) == 3
    assert all(0 < ms < 1000 for ms in times)


def test_a_failed_lowering_leaves_nothing_behind(tmp_path: Path, images: torch.Tensor, python: Path) -> None:
    with pytest.raises(EdgeExportError, match="ExecuTorch export failed"):
        export_executorch(small_model(0), images, DIGIT_SPEC, tmp_path / "executorch", tmp_path / "no-python")
    assert list(tmp_path.iterdir()) == []


def test_no_batches_start_no_worker(tmp_path: Path) -> None:
    logits, times = executorch_run(tmp_path, iter([]), tmp_path / "no-python", runs=3, warmup=1)

    assert (logits.shape, times) == ((0, 0), ())


def test_a_failing_worker_fails_with_its_error_however_many_batches_are_left(tmp_path: Path) -> None:
    python = tmp_path / "python"  # a worker that fails at once, before reading any of the 8 MB of batches
    python.write_text("#!/bin/sh\necho 'the worker broke' >&2\nexit 3\n")
    python.chmod(0o755)
    batches = (np.zeros((64, 3, 32, 32), dtype=np.float32) for _ in range(10))
    with pytest.raises(RuntimeError, match="the worker broke"):
        executorch_run(tmp_path, batches, python, runs=3, warmup=1)


def test_a_missing_venv_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"setup-executorch\.sh"):
        executorch_python(tmp_path)
