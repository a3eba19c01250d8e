"""``autovision export``: edge formats of a finished run, each failing alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.contract import env
from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_DIR, TFLITE_FILE, TFLITE_INT8_FILE
from autovision.storage import Storage
from tests.support.runs import import_digits, write_digits_run
from tests.support.tflite import DIGIT_SPEC

runner = CliRunner()


def test_an_unknown_format_is_refused_before_any_work(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", str(tmp_path), "--format", "tfjs"])
    assert result.exit_code == 1
    assert "unknown format(s) tfjs" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.training
def test_tflite_is_written_beside_the_run_and_a_failing_format_fails_alone(
    tmp_path: Path, model_card: ModelCard
) -> None:
    pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")
    from autovision.export.tflite_metadata import read_metadata

    run = write_digits_run(tmp_path / "run", model_card)
    args = ["export", str(run), "--format", "executorch", "--format", "tflite"]
    result = runner.invoke(app, [*args, "--executorch-venv", str(tmp_path / "absent")])
    assert result.exit_code == 1
    assert "executorch:" in result.stderr
    assert "setup-executorch.sh" in " ".join(result.stderr.split())
    assert read_metadata(run / MODEL_DIR / TFLITE_FILE).labels == DIGIT_SPEC.labels
    assert not (run / MODEL_DIR / "executorch").exists()


@pytest.mark.training
def test_int8_tflite_is_calibrated_from_the_runs_dataset_in_the_storage_root(
    tmp_path: Path, model_card: ModelCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("litert_torch", reason="the edge extra is not installed (docs/edge.md)")
    from ai_edge_litert.interpreter import Interpreter

    storage = Storage(f"file://{tmp_path / 'storage'}")
    _, card = import_digits(storage, tmp_path, model_card)
    run = write_digits_run(tmp_path / "storage" / "runs" / "ns" / "job" / "u0", card)
    monkeypatch.setenv(env.STORAGE_ROOT, storage.uri(""))
    result = runner.invoke(app, ["export", "runs/ns/job/u0", "--format", "tflite-int8"])
    assert result.exit_code == 0, result.output
    assert "model.int8.tflite" in result.stdout
    interpreter = Interpreter(model_path=str(run / MODEL_DIR / TFLITE_INT8_FILE))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
