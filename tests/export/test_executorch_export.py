"""ExecuTorch: the ``.pte`` file runs in the ExecuTorch runtime and agrees with PyTorch; failures leave nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.export.edge_files import EdgeExportError
from autovision.export.executorch_export import (
    LABELS_FILE,
    PREPROCESSING_FILE,
    PTE_FILE,
    executorch_latency,
    executorch_logits,
    executorch_python,
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


def test_the_pte_file_agrees_with_pytorch_in_the_executorch_runtime(
    tmp_path: Path, images: torch.Tensor, python: Path
) -> None:
    path = export_executorch(small_model(0), images, DIGIT_SPEC, tmp_path / "executorch", python)
    assert sorted(p.name for p in path.iterdir()) == sorted([PTE_FILE, LABELS_FILE, PREPROCESSING_FILE])
    assert (path / LABELS_FILE).read_text().splitlines() == list(DIGIT_SPEC.labels)
    expected = predict_logits(small_model(0), images)
    actual = executorch_logits(path, images.numpy(), python)
    assert np.abs(expected - actual).max() < 1e-4
    assert (expected.argmax(1) == actual.argmax(1)).all()
    times = executorch_latency(path, images.numpy(), python, runs=3, warmup=1)
    assert len(times) == 3
    assert all(0 < ms < 1000 for ms in times)


def test_a_failed_lowering_leaves_nothing_behind(tmp_path: Path, images: torch.Tensor, python: Path) -> None:
    with pytest.raises(EdgeExportError, match="ExecuTorch export failed"):
        export_executorch(small_model(0), images, DIGIT_SPEC, tmp_path / "executorch", tmp_path / "no-python")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_venv_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"setup-executorch\.sh"):
        executorch_python(tmp_path)
