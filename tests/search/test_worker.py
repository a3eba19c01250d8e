"""Two real worker processes share one budget through the study and together stay within it."""

from __future__ import annotations

from pathlib import Path

import optuna

from autovision.data.importer import import_dataset
from autovision.progress import LogReporter
from autovision.search.budget import BUDGET_UNIT_SECONDS
from autovision.search.job import ImageCache, SearchSettings
from autovision.search.records import spent_seconds
from autovision.search.study import StudyStore
from autovision.search.worker import run_workers
from autovision.storage import Storage
from tests.search_support import digits_subset_zip, search_job, tiny_space


def test_two_worker_processes_share_one_budget(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=24)), "digits", storage)
    settings = SearchSettings(early_stopping=False, workers=2)  # worker 1 is a process of its own
    prefix = "runs/test/shared/u"
    job = search_job(storage, dataset.records, prefix, space=tiny_space(slow=True), budget=6, settings=settings)

    run_workers(job, ImageCache(job.records, job.labels, storage), LogReporter())

    store = StudyStore(storage, job.prefix)
    trials = optuna.load_study(study_name="search", storage=store.optuna_storage()).get_trials()
    assert {trial.user_attrs["worker"] for trial in trials} == {0, 1}
    # Each worker's first step measures its pace before any trial of the configuration has reported one.
    attributes = [trial.user_attrs for trial in trials if trial.user_attrs.get("stepSeconds") is not None]
    probes = sorted(attrs["stepSeconds"] * (1 + attrs["finishSteps"]) for attrs in attributes)[-2:]
    assert spent_seconds(trials) <= job.plan.search_seconds + BUDGET_UNIT_SECONDS + sum(probes)
    assert all(trial.state != optuna.trial.TrialState.RUNNING for trial in trials)
