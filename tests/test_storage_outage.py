"""A search survives a real S3 outage: SeaweedFS stopped after the first trial and started again."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from autovision.contract.keys import progress_key
from autovision.data.importer import import_dataset
from autovision.embedded_s3 import EmbeddedS3
from autovision.progress import LogReporter
from autovision.search.job import ImageCache, SearchJob, SearchSettings
from autovision.search.nodes import run_node
from autovision.search.study import StudyStore
from autovision.storage import Storage
from autovision.train.trainer import TrialCheckpoint
from tests.search_support import digits_subset_zip, search_job, tiny_space

OUTAGE_S = 6.0
TRIALS = 3


class OutageAfterFirstTrial(LogReporter):
    """Stops S3 once progress.json counts a finished trial, and starts it again ``OUTAGE_S`` later.

    The stop happens inside the search's own progress update, so the search's
    next storage operation meets the outage for certain.
    """

    def __init__(self, s3: EmbeddedS3, progress: Storage, key: str) -> None:
        self.s3 = s3
        self.progress = progress
        self.key = key
        self.restart: threading.Timer | None = None

    def update(self, completed: float, detail: str = "") -> None:
        if self.restart is not None or not self.progress.exists(self.key):
            return
        trials = self.progress.read_json(self.key)["trials"]
        if trials["done"] + trials["pruned"] >= 1:
            self.s3.stop()
            self.restart = threading.Timer(OUTAGE_S, self.s3.start)
            self.restart.start()


def study_trials(job: SearchJob) -> list[FrozenTrial]:
    store = StudyStore(job.storage(), job.prefix, job.settings.work_dir)
    store.restore()
    return optuna.load_study(study_name="search", storage=store.optuna_storage()).get_trials()


@pytest.mark.e2e
def test_a_search_rides_out_an_s3_outage_without_redoing_a_trial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedS3(tmp_path / "seaweedfs") as s3:
        storage = Storage.from_settings(s3.settings("outage"))
        dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=12)), "digits", storage)
        settings = SearchSettings(early_stopping=False, max_trials=TRIALS, work_dir=tmp_path / "work")
        job = search_job(storage, dataset.records, "runs/outage/u", space=tiny_space(), settings=settings)
        reporter = OutageAfterFirstTrial(s3, storage, progress_key(job.prefix))

        with caplog.at_level(logging.WARNING, logger="autovision.storage"):
            run_node(job, ImageCache(job.records, job.labels, job.storage()), reporter)

        assert reporter.restart is not None, "the outage never happened"
        reporter.restart.join()
        retries = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
        assert retries, f"no storage call met the outage: {[record.getMessage() for record in caplog.records]}"
        trials = study_trials(job)
        assert [trial.number for trial in trials] == list(range(TRIALS)), "a trial was added (redone) or lost"
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
        assert not any("resumedFrom" in trial.user_attrs for trial in trials)
        for trial in trials:
            state = TrialCheckpoint(storage, trial.user_attrs["checkpoint"]).load()
            assert state is not None
            assert list(state["starts"]) == [0], f"trial {trial.number} was trained more than once"
