"""Plan what fits: a small budget starts with a cheaper configuration; one too small for any is refused."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from autovision.contract.keys import budget_probe_key
from autovision.data.importer import import_dataset
from autovision.preprocess import PreprocessConfig
from autovision.search.job import ImageCache, SearchJob
from autovision.search.probe import BudgetTooSmallError, estimate_minimum_budget, plan_first_trial
from autovision.storage import Storage
from autovision.train import trainer
from tests.support.search import digits_subset_zip, search_job, tiny_space

# A slowed step at 8 px; steps slow down with the pixels they train on, as on a real device.
SLOW_STEP = 0.3


def slowed_train_trial(
    train: Any, validation: Any, config: Any, preprocess: PreprocessConfig, **kwargs: Any
) -> trainer.TrialResult:
    """The trainer on a device far slower than this one: 0.3 s a step at 8 px, 1.2 s at 16 px."""
    guard: trainer.StepGuard = kwargs.pop("step_guard")

    def slowed(used: float, pace: float | None, left: int) -> bool:
        time.sleep(SLOW_STEP * (preprocess.size / 8) ** 2)
        return guard(used, pace, left)

    return trainer.train_trial(train, validation, config, preprocess, step_guard=slowed, **kwargs)


class Notes:
    """A reporter that keeps the notes it was given."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def stage(self, title: str, total: float | None = None) -> None:
        """Stages are not looked at."""

    def update(self, completed: float, detail: str = "") -> None:
        """Nor is progress."""

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.fixture
def digits_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SearchJob:
    """A search of 8 or 16 px CNNs, narrow or wide, on a slowed device; its warm start is the 16 px one."""
    storage = Storage(f"file://{tmp_path / 'storage'}")
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=10)), "digits", storage)
    monkeypatch.setattr("autovision.search.probe.train_trial", slowed_train_trial)
    space = dataclasses.replace(tiny_space(), cnn_resolutions=(8, 16), widths=(4, 16))
    return search_job(storage, dataset.records, "runs/test/probe/u", space=space)


@pytest.mark.training
def test_a_budget_below_every_estimate_is_refused(digits_job: SearchJob) -> None:
    images = ImageCache(digits_job.records, digits_job.labels, digits_job.storage())
    job = dataclasses.replace(digits_job, budget_milli_node_hours=1)

    with pytest.raises(BudgetTooSmallError) as refused:
        plan_first_trial(job, images, Notes())
    # at least MIN_STEPS slowed steps of the cheapest configuration and its finish, over the search's 80 % share
    assert refused.value.minimum >= 2
    assert "(an estimate" in str(refused.value)
    assert not images.storage.exists(budget_probe_key(job.prefix)), "the probe leaves nothing behind"


@pytest.mark.training
def test_a_small_budget_starts_with_the_cheapest_configuration(
    digits_job: SearchJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = ImageCache(digits_job.records, digits_job.labels, digits_job.storage())
    space = digits_job.space
    [cheapest] = space.cheaper_starts()
    warm = estimate_minimum_budget(digits_job, images)
    cheap = estimate_minimum_budget(digits_job, images, cheapest)
    assert cheap < warm, "8 px and width 4 cost less than 16 px and width 16"

    # The plan measures again; on a machine whose load changes, a second measure may differ by a unit.
    # The plan is checked against the estimates just measured.
    measured = {None: warm, tuple(sorted(cheapest.items())): cheap}
    monkeypatch.setattr(
        "autovision.search.probe.estimate_minimum_budget",
        lambda job, images, params=None: measured[None if params is None else tuple(sorted(params.items()))],
    )
    notes = Notes()
    planned = plan_first_trial(dataclasses.replace(digits_job, budget_milli_node_hours=warm - 1), images, notes)
    assert planned.warm_start() == cheapest
    [note] = notes.notes
    assert "residual_cnn at 8 px" in note

    unchanged = plan_first_trial(dataclasses.replace(digits_job, budget_milli_node_hours=warm + 2), images, notes)
    assert unchanged.warm_start() == space.warm_start()
