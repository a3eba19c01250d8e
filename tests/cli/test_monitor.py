"""``autovision monitor``: a drift check of a deployment's log, printed and stored."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.contract import env
from autovision.contract.files import DriftReport, ModelCard
from autovision.contract.keys import DRIFT_REFERENCE_FILE, MODEL_CARD, drift_report_key, prediction_log_prefix
from autovision.storage import Storage
from tests.support.drift import darkened, digits_reference, logged, shuffled_digits, write_shards

runner = CliRunner()
PREFIX = prediction_log_prefix("local", "digits")


@pytest.fixture
def model_dir(tmp_path: Path, model_card: ModelCard) -> Path:
    directory = tmp_path / "run" / "model"
    directory.mkdir(parents=True)
    (directory / MODEL_CARD).write_text(model_card.model_dump_json(by_alias=True))
    (directory / DRIFT_REFERENCE_FILE).write_bytes(digits_reference(300).to_npz())
    return directory


def test_monitor_prints_and_stores_the_verdict_and_exits_zero_on_drift(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    monkeypatch.setenv(env.STORAGE_ROOT, storage.uri(""))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    write_shards(storage, PREFIX, logged([darkened(image) for image in shuffled_digits()[300:400]], start))

    result = runner.invoke(app, ["monitor", str(model_dir.parent), "--deployment", "digits", "--window-minutes", "30"])

    assert result.exit_code == 0, result.output
    assert "Drift: drift in confidence" in result.stdout
    assert "embedding" in result.stdout
    report = DriftReport.model_validate(storage.read_json(drift_report_key(PREFIX)))
    assert (report.status, report.predictions) == ("Drift", 100)


def test_monitor_refuses_a_model_without_a_reference(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env.STORAGE_ROOT, f"file://{tmp_path / 'storage'}")
    (model_dir / DRIFT_REFERENCE_FILE).unlink()

    result = runner.invoke(app, ["monitor", str(model_dir.parent), "--deployment", "digits"])

    assert result.exit_code == 1
    assert "exported before drift monitoring" in " ".join(result.stderr.split())
    assert not (tmp_path / "storage").exists()
