"""The shared study: created once with its first trial, resumed without enqueuing another."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from autovision.search.study import StudyStore, open_study
from autovision.storage import Storage
from tests.support.search import tiny_space


def test_a_new_study_starts_with_the_warm_start_and_a_resumed_one_enqueues_nothing(tmp_path: Path) -> None:
    store = StudyStore(Storage(f"file://{tmp_path}"), "runs/test/study/u")
    space = tiny_space()
    [cheapest] = space.cheaper_starts()
    study = open_study(store, space.starting_with(cheapest), seed=0)
    [first] = study.get_trials()
    assert (first.state, first.params) == (TrialState.WAITING, {})
    assert first.system_attrs["fixed_params"] == cheapest

    trial = study.ask()
    space.suggest(trial)
    study.tell(trial, 0.5)
    resumed = open_study(store, space, seed=0)  # a rerun's job holds the space's usual warm start
    assert [(trial.number, trial.state) for trial in resumed.get_trials()] == [(0, TrialState.COMPLETE)]
