"""The trainer image's entry point, as the operator's Jobs run it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from autovision.storage import Storage
from autovision_trainer.__main__ import BAD_INPUT_EXIT_CODE, app

runner = CliRunner()


@pytest.fixture
def storage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    root = f"file://{tmp_path / 'storage'}"
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", root)
    return Storage(root)


def test_import_then_train_within_budget(storage_root: Storage, digits_zip: Path) -> None:
    imported = runner.invoke(app, ["import", "--name", "digits", "--source", f"file://{digits_zip}"])
    assert imported.exit_code == 0, imported.output
    version = storage_root.read_json("datasets/digits/latest.json")["version"]

    budget = 2  # 7.2 seconds: the search's share ends inside its first trial (12 epochs)
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u1", "--dataset", "digits"]
    args += ["--dataset-version", version, "--budget-milli-node-hours", str(budget), "--optimize-for", "LowLatency"]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    progress = storage_root.read_json("runs/ns/tj/u1/progress.json")
    card = storage_root.read_json("runs/ns/tj/u1/model/model.json")
    assert progress["phase"] == "Succeeded"
    assert progress["artifacts"]["onnx"].endswith("runs/ns/tj/u1/model/model.onnx")
    assert progress["best"]["trial"] == card["search"]["chosenTrial"]
    assert sum(progress["trials"].values()) == len(card["search"]["trials"]) >= 1
    assert card["search"]["optimizeFor"] == "LowLatency"
    assert card["search"]["stopReason"] == "budget"
    assert 1 <= card["metrics"]["epochsTrained"] < 12, "the budget must stop training before all epochs"
    assert card["milliNodeHoursUsed"] >= budget


def test_an_unknown_task_exits_with_the_bad_input_code(storage_root: Storage, digits_zip: Path) -> None:
    result = runner.invoke(app, ["import", "--name", "d", "--source", f"file://{digits_zip}", "--task", "Regression"])
    assert result.exit_code == BAD_INPUT_EXIT_CODE
    assert storage_root.list_keys("") == []


def test_bad_source_exits_with_the_bad_input_code(storage_root: Storage, tmp_path: Path) -> None:
    not_a_zip = tmp_path / "x.zip"
    not_a_zip.write_text("hello")
    result = runner.invoke(app, ["import", "--name", "bad", "--source", f"file://{not_a_zip}"])
    assert result.exit_code == BAD_INPUT_EXIT_CODE
    assert storage_root.list_keys("") == []


def test_pods_after_the_first_of_an_indexed_job_leave_the_search_to_pod_0(
    storage_root: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u2", "--dataset", "digits"]
    result = runner.invoke(app, [*args, "--dataset-version", "sha256-x", "--budget-milli-node-hours", "10"])
    assert result.exit_code == 0, result.output
    assert storage_root.list_keys("runs") == []
