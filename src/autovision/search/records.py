"""The trials table and the search's stop rules, read from the study's trials (pure, but for ``write_progress``).

A worker stops at the budget (when no smallest trial fits in what every worker
has spent or claimed), at the trial cap, or (with early stopping) when the last
trials stopped improving on the best. The budget is counted from what the
study's journal says was spent and claimed, over every trial of every worker
(interrupted ones included), so a worker that starts again keeps counting from
there. ``search_progress`` is progress.json while searching; ``write_progress``
stores it for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from autovision.contract.files import SEARCHING_PHASE, Progress
from autovision.contract.keys import progress_key
from autovision.resources import TrialCounts, TrialOutcome
from autovision.search.budget import Claim, may_start, milli_node_hours, smallest_trial_seconds, stalled
from autovision.storage import Storage

if TYPE_CHECKING:  # the console reads trial records without torch, which the job's module imports
    from autovision.search.job import SearchJob

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# The ``stop`` attribute of a trial the budget stopped (Optuna records it as pruned: cut short).
BUDGET_STOP = TrialOutcome.STOPPED_BY_BUDGET.value


def outcome(trial: FrozenTrial) -> TrialOutcome | None:
    """What a trial is doing or what ended it; None while it waits to be taken."""
    if trial.state == TrialState.PRUNED:
        return TrialOutcome.STOPPED_BY_BUDGET if trial.user_attrs.get("stop") == BUDGET_STOP else TrialOutcome.PRUNED
    return {
        TrialState.RUNNING: TrialOutcome.RUNNING,
        TrialState.COMPLETE: TrialOutcome.COMPLETE,
        TrialState.FAIL: TrialOutcome.INTERRUPTED,
    }.get(trial.state)


class LatencyMethod(StrEnum):
    """How a trial's latency was measured (``autovision.search.trial_latency``), as its record says."""

    TORCH = "pytorch-batch1"
    """The PyTorch model at batch 1 on the worker's device (target Cloud)."""
    LITERT = "litert-1-thread"
    """Its fp32 ``.tflite`` file in the LiteRT interpreter on one CPU thread (target Edge)."""


@dataclass(frozen=True)
class TrialRecord:
    """One row of the trials table, read from the study."""

    number: int
    state: TrialOutcome | None
    architecture: str | None
    resolution: int | None
    epochs: int | None
    epochs_trained: int
    best_epoch: int | None
    value: float | None
    latency_ms: float | None
    latency_method: LatencyMethod | None
    model_bytes: int | None
    parameters: int | None
    seconds: float
    step_seconds: float | None
    worker: int | None
    stop: str | None
    checkpoint: str | None
    params: dict[str, Any]

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a trial in any state."""
        attrs = trial.user_attrs
        intermediate = list(trial.intermediate_values.values())
        value = attrs.get("bestValue", max(intermediate) if intermediate else None)
        return cls(
            number=trial.number,
            state=outcome(trial),
            architecture=attrs.get("architecture"),
            resolution=attrs.get("resolution"),
            epochs=attrs.get("epochs"),
            epochs_trained=attrs.get("epochsTrained", len(intermediate)),
            best_epoch=attrs.get("bestEpoch"),
            value=value,
            latency_ms=attrs.get("latencyMs"),
            latency_method=None if attrs.get("latencyMethod") is None else LatencyMethod(attrs["latencyMethod"]),
            model_bytes=attrs.get("modelBytes"),
            parameters=attrs.get("parameters"),
            seconds=float(attrs.get("seconds", 0.0)),
            step_seconds=attrs.get("stepSeconds"),
            worker=attrs.get("worker"),
            stop=attrs.get("stop"),
            checkpoint=attrs.get("checkpoint"),
            params=dict(trial.params),
        )

    def to_json(self) -> dict[str, Any]:
        """The row as the model card and ``--json`` show it."""
        return {
            "trial": self.number,
            "state": None if self.state is None else self.state.value,
            "architecture": self.architecture,
            "resolution": self.resolution,
            "epochs": self.epochs,
            "epochsTrained": self.epochs_trained,
            "bestEpoch": self.best_epoch,
            "value": self.value,
            "latencyMs": self.latency_ms,
            "latencyMethod": None if self.latency_method is None else self.latency_method.value,
            "modelBytes": self.model_bytes,
            "parameters": self.parameters,
            "seconds": round(self.seconds, 3),
            "stepSeconds": self.step_seconds,
            "worker": self.worker,
            "stop": self.stop,
            "params": self.params,
        }


def spent_seconds(trials: list[FrozenTrial]) -> float:
    """Device seconds the search has spent, over every trial of every worker (interrupted ones included)."""
    return sum(float(trial.user_attrs.get("seconds", 0.0)) for trial in trials)


def finished_values(trials: list[FrozenTrial]) -> list[float]:
    """Finished trials' values in the order they finished, for early stopping."""
    finished = sorted(
        (trial for trial in trials if trial.state in FINISHED and trial.datetime_complete is not None),
        key=lambda trial: (trial.datetime_complete, trial.number),
    )
    values = (TrialRecord.of(trial).value for trial in finished)
    return [value for value in values if value is not None]


def claims(trials: list[FrozenTrial]) -> list[Claim]:
    """Every trial's claim on the budget, as its worker last published it.

    A trial just asked for has published nothing yet: it counts from its start,
    not from the epoch, or another worker reading it would see the budget gone.
    """
    return [
        Claim(
            spent=float(trial.user_attrs.get("seconds", 0.0)),
            ahead=float(trial.user_attrs.get("ahead", 0.0)),
            at=float(trial.user_attrs.get("updatedAt", _started_at(trial))),
            open=trial.state == TrialState.RUNNING,
        )
        for trial in trials
    ]


def _started_at(trial: FrozenTrial) -> float:
    """When the trial started, as a Unix time (0 for one never started)."""
    return 0.0 if trial.datetime_start is None else trial.datetime_start.timestamp()


def smallest_trial(trials: list[FrozenTrial]) -> float:
    """The cheapest validated model measured so far (0 before any trial measured its pace)."""
    costs = [
        smallest_trial_seconds(attrs["stepSeconds"], attrs.get("decodeSeconds", 0.0), attrs.get("finishSteps", 0.0))
        for attrs in (trial.user_attrs for trial in trials)
        if attrs.get("stepSeconds") is not None
    ]
    return min(costs, default=0.0)


def budget_allows_a_trial(trials: list[FrozenTrial], job: SearchJob, now: float) -> bool:
    """Whether the search's share still holds the cheapest validated model, beside every claim."""
    return may_start(job.plan.search_seconds, claims(trials), now, smallest_trial(trials))


def stop_reason(trials: list[FrozenTrial], job: SearchJob, now: float) -> str | None:
    """Why the search must not start another trial: budget, trials or stalled; None to go on."""
    if not budget_allows_a_trial(trials, job, now):
        return "budget"
    started = [trial for trial in trials if trial.state in (*FINISHED, TrialState.RUNNING)]
    cap = job.trial_cap
    if cap is not None and len(started) >= cap:
        return "trials"
    settings = job.settings
    if settings.early_stopping and stalled(finished_values(trials), settings.patience, settings.min_delta):
        return "stalled"
    return None


def best_so_far(trials: list[FrozenTrial]) -> TrialRecord | None:
    """The trial with the highest validation value yet (running trials count with their best epoch)."""
    records = [TrialRecord.of(trial) for trial in trials if trial.state != TrialState.FAIL]
    scored = [record for record in records if record.value is not None]
    return max(scored, key=lambda record: (record.value, -record.number)) if scored else None


def trial_counts(records: list[TrialRecord]) -> TrialCounts:
    """Trials by outcome, as progress.json and status show them."""
    states = [record.state for record in records]
    return TrialCounts(
        done=states.count(TrialOutcome.COMPLETE),
        running=states.count(TrialOutcome.RUNNING),
        pruned=states.count(TrialOutcome.PRUNED),
        stopped_by_budget=states.count(TrialOutcome.STOPPED_BY_BUDGET),
        interrupted=states.count(TrialOutcome.INTERRUPTED),
    )


def search_progress(trials: list[FrozenTrial], metric: str) -> Progress:
    """progress.json while searching: trial counts, the best so far and the budget used."""
    best = best_so_far(trials)
    return Progress.model_validate(
        {
            "phase": SEARCHING_PHASE,
            "trials": trial_counts([TrialRecord.of(trial) for trial in trials]),
            "best": None
            if best is None
            else {
                "trial": best.number,
                "architecture": best.architecture,
                "metric": metric,
                "value": best.value,
                "latencyMs": best.latency_ms,
                "modelBytes": best.model_bytes,
            },
            "milliNodeHoursUsed": milli_node_hours(spent_seconds(trials)),
            "searchMilliNodeHoursUsed": milli_node_hours(spent_seconds(trials)),
        }
    )


def write_progress(storage: Storage, prefix: str, progress: Progress) -> None:
    """progress.json, read by the operator: phase, trials, best so far, budget used."""
    storage.write_json(progress_key(prefix), progress.to_json())
