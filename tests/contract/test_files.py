"""Each file exchanged: written by the trainer's code, read back by the operator's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from autovision.contract.files import ImportProgress, ModelCard, Progress
from autovision.contract.keys import import_progress_key, model_card_key, progress_key
from autovision.data.importer import SplitSettings, import_dataset
from autovision.progress import LogReporter, ProgressFile
from autovision.resources import Task
from autovision.search.records import write_progress
from autovision.storage import Storage
from autovision_operator import dataset_handlers, training_handlers


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    return Storage(f"file://{tmp_path / 'storage'}")


def test_import_progress_as_the_import_writes_it(storage: Storage) -> None:
    progress = ProgressFile(storage, import_progress_key("ml/flowers"), LogReporter())
    progress.stage("Decoding images", total=40)
    read = dataset_handlers.read_import_progress(storage, "ml/flowers")
    assert read == ImportProgress(stage="Decoding images", total=40, updated_at=read.updated_at if read else "")
    assert read is not None
    assert read.describe() == "decoding images: 0 of 40"
    progress.remove()
    assert dataset_handlers.read_import_progress(storage, "ml/flowers") is None


def test_the_import_report_and_latest_version_as_an_import_writes_them(storage: Storage, digits_zip: Path) -> None:
    imported = import_dataset(f"file://{digits_zip}", "ml/digits", storage, SplitSettings(80, 10, 10, 0))
    result = dataset_handlers.read_import_result(storage, "ml/digits")
    assert result is not None
    assert result.version == imported.version
    assert result.report.kept == len(imported.records)
    assert result.report.task == Task.SINGLE_LABEL
    assert set(result.report.per_label) == {f"digit_{i}" for i in range(10)}


def test_progress_as_the_search_writes_it(storage: Storage) -> None:
    written = Progress.model_validate(
        {
            "phase": "Searching",
            "trials": {"done": 2, "running": 1, "pruned": 1},
            "best": {"trial": 1, "architecture": "efficientnet-lite0", "metric": "accuracy", "value": 0.75},
            "milliNodeHoursUsed": 12,
        }
    )
    write_progress(storage, "runs/ns/tj/u1", written)
    assert storage.read_json(progress_key("runs/ns/tj/u1"))["milliNodeHoursUsed"] == 12, "camelCase on the wire"
    assert training_handlers.read_progress(storage, "ns", "tj", "u1") == written
    assert training_handlers.read_progress(storage, "ns", "tj", "other") is None


def test_a_reader_ignores_fields_it_does_not_know(storage: Storage) -> None:
    """An older operator keeps reading what a newer trainer writes."""
    storage.write_json(progress_key("runs/ns/tj/u1"), {"phase": "Succeeded", "somethingNew": [1, 2]})
    progress = training_handlers.read_progress(storage, "ns", "tj", "u1")
    assert progress is not None
    assert progress.succeeded


def test_the_model_card_round_trips_through_json(storage: Storage, model_card: ModelCard) -> None:
    card = model_card.model_copy(update={"task": Task.MULTI_LABEL})
    storage.write_json(model_card_key("runs/ns/tj/u1"), card.to_json())
    read = ModelCard.model_validate(storage.read_json(model_card_key("runs/ns/tj/u1")))
    assert read == card
    assert read.multi_label
    assert storage.read_json(model_card_key("runs/ns/tj/u1"))["metrics"]["testAccuracy"] == 0.5


def test_the_contract_needs_neither_torch_nor_kopf() -> None:
    """The operator image has no torch and the trainer image no kopf: both import the contract."""
    code = (
        "import sys\n"
        "import autovision.contract.env, autovision.contract.exit_codes, autovision.contract.files\n"
        "import autovision.contract.keys, autovision.contract.trainer_args\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'kopf', 'onnxruntime', 'optuna')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("labels", "task", "problem"),
    [
        (["a", "b"], Task.SINGLE_LABEL, None),
        (["b", "a"], Task.SINGLE_LABEL, "the base model's labels are the dataset's in another order"),
        (["a", "b", "c"], Task.SINGLE_LABEL, "the labels differ: the dataset has c, which the base model lacks"),
        (["a"], Task.SINGLE_LABEL, "the labels differ: the base model has b, which the dataset lacks"),
        (["a", "b"], Task.MULTI_LABEL, "the base model is SingleLabel, the dataset MultiLabel"),
    ],
)
def test_a_model_card_says_what_keeps_it_from_continuing_on_a_dataset(
    model_card: ModelCard, labels: list[str], task: Task, problem: str | None
) -> None:
    assert model_card.mismatch(labels, task) == problem
