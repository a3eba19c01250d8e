"""The final fit: on one process, or data-parallel over several."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest

from autovision.contract.files import Progress
from autovision.contract.keys import RunLocation, final_checkpoint_key, final_plan_key, progress_key
from autovision.data.importer import import_dataset
from autovision.embedded_s3 import free_port
from autovision.pipeline import train_evaluate_export
from autovision.progress import LogReporter
from autovision.search.budget import milli_node_hours
from autovision.search.final import FinalFitPlanMissingError, FinalPlan, final_processes, join_final_fit
from autovision.search.job import ImageCache, SearchJob, SearchSettings
from autovision.storage import Storage
from autovision.train.trainer import TrainConfig, TrialCheckpoint
from tests.support.search import digits_subset_zip, search_job, tiny_space


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
    progress = Progress.model_validate(storage.read_json(progress_key(run.prefix)))
    assert progress.search_milli_node_hours_used == milli_node_hours(card.search["seconds"])
    assert progress.final_fit_milli_node_hours_used == milli_node_hours(card.final_fit.seconds)


def node_jobs(storage: Storage, tmp_path: Path, rendezvous: str, timeout: float) -> list[SearchJob]:
    """Nodes 0 and 1 of a two-node run whose final fit meets at ``rendezvous``."""
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=10)), "digits", storage)
    return [
        search_job(
            storage,
            dataset.records,
            "runs/ns/two/u",
            space=tiny_space(),
            settings=SearchSettings(
                node=node, nodes=2, coordinator="127.0.0.1:1", rendezvous=rendezvous, rendezvous_timeout=timeout
            ),
        )
        for node in (0, 1)
    ]


def test_a_member_without_node_0s_plan_fails_and_without_a_shared_fit_stops(
    file_storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("autovision.search.final.PLAN_POLL_SECONDS", 0.05)
    member = node_jobs(file_storage, tmp_path, f"127.0.0.1:{free_port()}", timeout=0.5)[1]
    images = ImageCache(member.records, member.labels, file_storage)
    searching = iter([True] * 30)  # node 0 still searching for 30 polls (1.5 s): longer than the timeout
    started = time.monotonic()
    with pytest.raises(
        FinalFitPlanMissingError, match=r"node 0 planned no final fit within 0\.5 s of its search's end"
    ):
        join_final_fit(member, images, LogReporter(), lambda: next(searching, False))
    assert time.monotonic() - started > 1.5, "no timeout while node 0 is still searching"

    alone = FinalPlan(trial=0, refit=True, params={}, max_seconds=60.0, nodes=1)  # node 0 fits alone
    file_storage.write_json(final_plan_key(member.prefix), alone.to_json())
    join_final_fit(member, images, LogReporter())
    assert not file_storage.exists(final_checkpoint_key(member.prefix))


@pytest.mark.training
def test_every_node_trains_its_ranks_of_the_planned_fit(file_storage: Storage, tmp_path: Path) -> None:
    """Node 0's plan (the chosen trial's parameters) is all a member needs to join the same fit."""
    rendezvous = f"127.0.0.1:{free_port()}"
    # Generous: on a loaded machine a member spawns its rank (a fresh interpreter importing torch) slowly.
    jobs = node_jobs(file_storage, tmp_path, rendezvous, timeout=300.0)
    trial = optuna.create_study().ask()
    config = jobs[0].space.suggest(trial).config
    plan = FinalPlan(trial=0, refit=True, params=trial.params, max_seconds=600.0, nodes=2)
    file_storage.write_json(final_plan_key(jobs[0].prefix), plan.to_json())

    def fit(job: SearchJob) -> None:
        join_final_fit(job, ImageCache(job.records, job.labels, file_storage), LogReporter())

    member = threading.Thread(target=fit, args=(jobs[1],))
    member.start()
    fit(jobs[0])
    member.join(300)
    done = TrialCheckpoint(file_storage, final_checkpoint_key(jobs[0].prefix)).load()
    assert done is not None
    assert done["epoch"] == config.epochs
