"""TrainingJob status from progress.json: budget-stopped trials and a refused budget."""

from __future__ import annotations

import datetime as dt

from autovision.contract.files import BUDGET_TOO_SMALL_PHASE, Progress
from autovision.resources import TrainingJobStatus, find_condition
from autovision_operator.status import JobObservation, JobPhase, is_finished, training_status

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_trials_stopped_by_the_budget_are_counted_apart() -> None:
    progress = Progress.model_validate(
        {"phase": "Searching", "trials": {"done": 2, "running": 1, "stoppedByBudget": 1}, "milliNodeHoursUsed": 30}
    )
    status = training_status(TrainingJobStatus(), JobObservation("s", JobPhase.RUNNING), progress, 40, T0)
    assert status.trials.stopped_by_budget == 1
    searching = find_condition(status.conditions, "Searching")
    assert searching is not None
    assert "1 stopped by the budget" in searching.message


def test_a_refused_budget_is_a_condition_with_the_estimated_minimum() -> None:
    progress = Progress(phase=BUDGET_TOO_SMALL_PHASE, minimum_budget_milli_node_hours=23)
    status = training_status(TrainingJobStatus(), JobObservation("s", JobPhase.FAILED), progress, 12, T0)
    failed = find_condition(status.conditions, "Failed")
    assert failed is not None
    assert (failed.status, failed.reason) == ("True", "BudgetTooSmall")
    assert "12" in failed.message
    assert "about 23 would (an estimate)" in failed.message
    assert is_finished(status)
