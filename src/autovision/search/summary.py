"""The finished search, read from the study: the trials table, the Pareto front and the chosen candidate.

``summarise`` picks the trial ``optimizeFor`` chooses on the accuracy/latency
Pareto front (for an Edge target, LiteRT latency: ``autovision.search.trial_latency``);
a finished trial that was closed without a latency (its worker was
killed) is measured here from its checkpoint. A choice pinned by an interrupted
run is kept, so that a rerun exports the model it had started to finish.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from optuna.trial import FixedTrial

from autovision.resources import OptimizeFor, TrainingTarget
from autovision.search.job import ImageCache, SearchJob
from autovision.search.pareto import Point, choose, pareto_front
from autovision.search.records import FINISHED, TrialRecord, spent_seconds, stop_reason
from autovision.search.space import Candidate
from autovision.search.study import open_study
from autovision.search.trial_latency import measure_latency
from autovision.train.trainer import TrialCheckpoint, restore_model


@dataclass(frozen=True)
class SearchResult:
    """The finished search: every trial, the Pareto front, the chosen trial and its candidate."""

    trials: list[TrialRecord]
    front: list[Point]
    chosen: TrialRecord
    candidate: Candidate
    seconds: float
    stop_reason: str
    metric: str
    target: TrainingTarget = TrainingTarget.CLOUD

    def to_json(self, optimize_for: OptimizeFor) -> dict[str, Any]:
        """The search section of the model card: an Edge target's trials and front carry their .tflite bytes."""
        sizes = {record.number: record.model_bytes for record in self.trials}
        return {
            "optimizeFor": optimize_for.value,
            "metric": self.metric,
            "stopReason": self.stop_reason,
            "seconds": round(self.seconds, 3),
            "chosenTrial": self.chosen.number,
            "target": self.target.value,
            "latencyMethod": None if self.chosen.latency_method is None else self.chosen.latency_method.value,
            "paretoFront": [
                {
                    "trial": point.trial,
                    "value": point.value,
                    "latencyMs": point.latency_ms,
                    "modelBytes": sizes.get(point.trial),
                }
                for point in self.front
            ],
            "trials": [record.to_json() for record in self.trials],
        }


def candidate_of(job: SearchJob, record: TrialRecord) -> Candidate:
    """Rebuild a trial's candidate from its parameters."""
    return job.space.suggest(FixedTrial(record.params, record.number))


def _with_latency(job: SearchJob, record: TrialRecord, images: ImageCache) -> TrialRecord:
    """A finished trial closed without a latency (its worker was killed): measure it from its checkpoint."""
    if record.latency_ms is not None or record.checkpoint is None:
        return record
    candidate = candidate_of(job, record)
    model = restore_model(candidate.config, len(job.labels), TrialCheckpoint(images.storage, record.checkpoint))
    latency = measure_latency(model, candidate.preprocess, job.labels, job.settings.target, images.device)
    return dataclasses.replace(
        record, latency_ms=latency.milliseconds, latency_method=latency.method, model_bytes=latency.model_bytes
    )


def summarise(job: SearchJob, images: ImageCache, pinned: int | None = None) -> SearchResult:
    """Read the finished study: the trials table, the Pareto front and the trial optimizeFor picks.

    ``pinned`` is a choice made before (by an interrupted run), kept so that a
    rerun exports the model it had started to finish.
    """
    study = open_study(job.study_store(images.storage), job.space, job.settings.seed)
    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.of(trial) for trial in trials]
    candidates = [
        _with_latency(job, record, images)
        for record, trial in zip(records, trials, strict=True)
        if trial.state in FINISHED and record.value is not None
    ]
    if not candidates:
        raise RuntimeError("the search finished no trial: the budget is too small to train any model")
    points = [Point(record.number, record.value or 0.0, record.latency_ms or 0.0) for record in candidates]
    chosen_number = choose(points, job.settings.optimize_for).trial if pinned is None else pinned
    chosen = next(record for record in candidates if record.number == chosen_number)
    by_number = {record.number: record for record in candidates}
    return SearchResult(
        trials=[by_number.get(record.number, record) for record in records],
        front=pareto_front(points),
        chosen=chosen,
        candidate=candidate_of(job, chosen),
        seconds=spent_seconds(trials),
        stop_reason=stop_reason(trials, job, time.time()) or "stopped",
        metric=job.metric,
        target=job.settings.target,
    )
