"""A budget too small for any validated model is refused before training, with an estimate of what would do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from autovision.contract.keys import budget_probe_key
from autovision.data.importer import import_dataset
from autovision.search.job import ImageCache
from autovision.search.probe import BudgetTooSmallError, estimate_minimum_budget, refuse_too_small
from autovision.storage import Storage
from autovision.train import trainer
from tests.support.search import digits_subset_zip, search_job, tiny_space

SLOW_STEP = 0.5


def slowed_train_trial(*args: Any, step_guard: trainer.StepGuard, **kwargs: Any) -> trainer.TrialResult:
    """The trainer, with every step half a second slower: a device far slower than this one."""

    def slowed(used: float, pace: float | None, left: int) -> bool:
        time.sleep(SLOW_STEP)
        return step_guard(used, pace, left)

    return trainer.train_trial(*args, step_guard=slowed, **kwargs)


@pytest.mark.training
def test_a_budget_below_the_estimated_minimum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=10)), "digits", storage)
    monkeypatch.setattr("autovision.search.probe.train_trial", slowed_train_trial)
    job = search_job(storage, dataset.records, "runs/test/probe/u", space=tiny_space(), budget=1)
    images = ImageCache(job.records, job.labels, storage)

    with pytest.raises(BudgetTooSmallError) as refused:
        refuse_too_small(job, images)
    # at least MIN_STEPS slowed steps and the finish, over the search's 80 % share
    assert refused.value.minimum >= 2
    assert "(an estimate" in str(refused.value)
    assert not storage.exists(budget_probe_key(job.prefix)), "the probe leaves nothing behind"

    enough = search_job(storage, dataset.records, "runs/test/probe/u", space=tiny_space(), budget=1_000)
    refuse_too_small(enough, images)
    assert estimate_minimum_budget(enough, images) <= 1_000
