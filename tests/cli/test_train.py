"""``autovision train``: options, datasets and base models refused before any work starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autovision.cli import app
from autovision.contract import env, exit_codes
from autovision.contract.files import ModelCard
from autovision.contract.keys import latest_key, manifest_key
from autovision.data.importer import import_dataset
from autovision.data.inspection import available_cores
from autovision.storage import Storage
from tests.support.datasets import labelled, tree, write_zip
from tests.support.runs import tiny_cnn_weights, write_finished_run

runner = CliRunner()


def test_nproc_above_the_available_cores_is_refused_with_one_message() -> None:
    cores = available_cores()
    args = ["train", "--dataset", "digits", "--budget-milli-node-hours", "1", "--nproc", str(cores + 1)]

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert f"--nproc {cores + 1} is more than the {cores} CPU cores" in " ".join(result.stderr.split())


def test_a_dataset_of_the_older_format_is_refused_with_one_message(
    file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_storage.write_bytes(manifest_key("pets", "sha256-old"), b'{"uri": "file:///x.png"}\n')
    file_storage.write_json(latest_key("pets"), {"version": "sha256-old"})
    monkeypatch.setenv(env.STORAGE_ROOT, file_storage.uri(""))

    result = runner.invoke(app, ["train", "--dataset", "pets", "--budget-milli-node-hours", "1"])

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "imported by an older AutoVision" in message
    assert message.endswith("import the dataset again")


def test_an_unknown_export_format_is_refused_before_any_work() -> None:
    args = ["train", "--dataset", "digits", "--budget-milli-node-hours", "1", "--export-formats", "onnx,tfjs"]

    result = runner.invoke(app, args)

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "--export-formats: unknown onnx, tfjs; choose from tflite, tflite-int8, coreml, executorch" in message


def test_an_export_format_the_install_cannot_write_fails_before_training(
    file_storage: Storage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    file_storage.write_json(latest_key("pets"), {"version": "sha256-new"})
    monkeypatch.setenv(env.STORAGE_ROOT, file_storage.uri(""))
    args = ["train", "--dataset", "pets", "--budget-milli-node-hours", "1", "--export-formats", "executorch"]

    result = runner.invoke(app, [*args, "--executorch-venv", str(tmp_path / "absent")])

    assert result.exit_code == 1
    assert "cannot export executorch" in result.stderr
    assert "setup-executorch.sh" in " ".join(result.stderr.split())
    assert file_storage.list_keys("") == [latest_key("pets")], "nothing trained, nothing written"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--edge-preset", "FasterPredictions"], "an edge preset (edgePreset, --edge-preset) needs target Edge"),
        (["--target", "edge", "--edge-preset", "BestTradeOff", "--optimize-for", "LowLatency"], "give one or the"),
    ],
)
def test_an_edge_preset_without_target_edge_or_with_optimize_for_is_refused(options: list[str], message: str) -> None:
    result = runner.invoke(app, ["train", "--dataset", "digits", "--budget-milli-node-hours", "1", *options])

    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())


def test_target_edge_without_the_edge_extra_fails_before_training(
    file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    find_spec = importlib.util.find_spec

    def without_litert(name: str, *args: Any) -> Any:
        return None if name == "litert_torch" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_litert)
    file_storage.write_json(latest_key("pets"), {"version": "sha256-new"})
    monkeypatch.setenv(env.STORAGE_ROOT, file_storage.uri(""))
    args = ["train", "--dataset", "pets", "--budget-milli-node-hours", "1", "--target", "edge"]

    result = runner.invoke(app, [*args, "--edge-preset", "fasterpredictions"])

    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "target Edge converts every trial to tflite and times it in LiteRT" in message
    assert "pip install 'autovision[edge]'" in message
    assert file_storage.list_keys("") == [latest_key("pets")], "nothing trained, nothing written"


@pytest.mark.parametrize(
    "case",
    [
        (["cat", "fox"], "the labels differ: the dataset has dog, which the base model lacks"),
        (["dog", "cat"], "the base model's labels are the dataset's in another order"),
        (None, "not a finished run"),
    ],
)
def test_a_base_model_that_does_not_fit_or_is_not_finished_exits_2_writing_nothing(
    file_storage: Storage,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    model_card: ModelCard,
    case: tuple[list[str] | None, str],
) -> None:
    labels, problem = case
    import_dataset(f"file://{write_zip(tmp_path / 'pets.zip', labelled(12))}", "pets", file_storage)
    base = "runs/local/old/u0"
    if labels is None:  # a run that never finished: a checkpoint, no model card
        file_storage.write_bytes(f"{base}/trials/0/checkpoint.pt", b"weights")
    else:
        write_finished_run(file_storage, base, model_card.model_copy(update={"labels": labels}), tiny_cnn_weights(2))
    monkeypatch.setenv(env.STORAGE_ROOT, file_storage.uri(""))
    before = tree(Path(file_storage.path("")))

    args = ["train", "--dataset", "pets", "--budget-milli-node-hours", "10", "--base-model", base]
    result = runner.invoke(app, args)

    assert result.exit_code == exit_codes.BAD_INPUT
    message = " ".join(result.stderr.split())
    assert message.startswith("error: base model")
    assert problem in message
    assert tree(Path(file_storage.path(""))) == before
