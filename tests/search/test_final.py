"""The final fit: on one process, or data-parallel over several."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovision.contract.keys import RunLocation, final_checkpoint_key
from autovision.data.importer import import_dataset
from autovision.pipeline import train_evaluate_export
from autovision.progress import LogReporter
from autovision.search.final import final_processes
from autovision.search.job import SearchSettings
from autovision.storage import Storage
from autovision.train.trainer import TrainConfig, TrialCheckpoint
from tests.support.search import digits_subset_zip, tiny_space


def test_the_final_fit_runs_on_one_process_when_the_batch_does_not_divide() -> None:
    assert final_processes(TrainConfig(batch_size=32), 2) == 2
    assert final_processes(TrainConfig(batch_size=32), 3) == 1


@pytest.mark.training
def test_a_data_parallel_final_fit_is_exported_and_counted(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=20)), "digits", storage)
    run = RunLocation("ns", "ddp", "u1")
    settings = SearchSettings(space=tiny_space(), max_trials=2, early_stopping=False, final_processes=2)

    card = train_evaluate_export(storage, "digits", dataset.version, run, LogReporter(), search=settings)

    assert card.final_fit.retrained is True
    assert card.final_fit.seconds > 0
    checkpoint = TrialCheckpoint(storage, final_checkpoint_key(run.prefix)).load()
    assert checkpoint is not None
    assert checkpoint["epoch"] == card.metrics.epochs_trained
    assert checkpoint["history"][-1]["seconds"] < card.final_fit.seconds, "seconds summed over two processes"
