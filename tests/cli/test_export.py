"""``autovision export``: edge formats of a finished run, each failing alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_DIR, TFLITE_FILE
from tests.support.runs import write_digits_run
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
