"""Pure status mapping: what a child Job and the trainer's files say, as resource status.

Handlers read the world (a Job, ``progress.json``, ``report.json``) and hand it
here; these functions decide the conditions, counts and results without any I/O,
so every state of a run is tested without a server. Conditions follow
metav1.Condition conventions through ``autovision.resources.set_condition``:
re-applying the same observation changes nothing, which keeps the handlers'
status patches empty when nothing happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, TypeVar

from autovision.contract.files import (
    BUDGET_TOO_SMALL_PHASE,
    RANK_LOST_PHASE,
    SUCCEEDED_PHASE,
    ImportProgress,
    ImportReportSummary,
    Progress,
)
from autovision.resources import (
    READY,
    Artifacts,
    Condition,
    ConditionStatus,
    DatasetCounts,
    DatasetStatus,
    ResourceStatus,
    TrainingJobStatus,
    find_condition,
    set_condition,
)

StatusT = TypeVar("StatusT", bound=ResourceStatus)

IMPORTING: Final = "Importing"
SEARCHING: Final = "Searching"
# True while the imported data has problems worth a look that did not refuse it
# (labels under 100 images, rejected files, near-duplicates ...): AutoML's warnings.
DATA_WARNINGS: Final = "DataWarnings"
FAILED: Final = "Failed"
SPEC_CHANGE_REFUSED: Final = "SpecChangeRefused"
RUN_SPEC_ANNOTATION: Final = "autovision.dev/run-spec"
# Spec fields that only matter when the resource is deleted: they may change at any time.
MUTABLE_FIELDS: Final = frozenset({"artifactPolicy"})
# A pod of an import fanned out over an Indexed Job failed more often than its slice may retry.
SLICE_FAILED: Final = "SliceFailed"
# The labels the Job controller puts on its pods: which Job, and which index of an Indexed Job.
JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
JOB_INDEX_LABEL: Final = "batch.kubernetes.io/job-completion-index"
# Job failure reasons (batch/v1 JobCondition) and what they mean to a user.
_FAILURE_REASONS: Final = {
    # Our pod failure policy fails the Job at once on the trainer's bad-input exit code.
    "PodFailurePolicy": "InvalidInput",
    "BackoffLimitExceeded": "BackoffLimitExceeded",
    "DeadlineExceeded": "DeadlineExceeded",
    # An index of an Indexed Job ran out of its backoffLimitPerIndex: a slice of a fanned-out import.
    "MaxFailedIndexesExceeded": SLICE_FAILED,
    "FailedIndexes": SLICE_FAILED,
}


@dataclass(frozen=True)
class ImportResult:
    """A finished import: its version, its report and where the report is."""

    version: str
    report: ImportReportSummary
    report_uri: str


# --- what the Job says --------------------------------------------------------


class JobPhase(StrEnum):
    """Where a child Job is, as far as status is concerned."""

    MISSING = "Missing"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobObservation:
    """A child Job's phase with the Job controller's reason and message."""

    name: str
    phase: JobPhase
    reason: str = ""
    message: str = ""
    failed_pods: int = 0
    pods: int = 1
    """The Job's completions: the pods of an Indexed Job, one each."""
    failed_indexes: str = ""
    """The indexes out of retries (``status.failedIndexes``, e.g. ``1,3-5``), with backoffLimitPerIndex."""


def observe_job(name: str, job: Mapping[str, Any] | None) -> JobObservation:
    """Read a batch/v1 Job (None when it does not exist) into a JobObservation.

    Only the terminal Complete and Failed conditions end a Job: the interim
    SuccessCriteriaMet and FailureTarget mean its pods are still stopping.
    """
    if job is None:
        return JobObservation(name, JobPhase.MISSING)
    status = job.get("status") or {}
    failed_pods = int(status.get("failed", 0))
    pods = int((job.get("spec") or {}).get("completions") or 1)
    failed_indexes = str(status.get("failedIndexes") or "")
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            reason, message = condition.get("reason", ""), condition.get("message", "")
            return JobObservation(name, JobPhase.SUCCEEDED, reason, message, pods=pods)
        if condition.get("type") == "Failed":
            reason, message = condition.get("reason", ""), condition.get("message", "")
            return JobObservation(name, JobPhase.FAILED, reason, message, failed_pods, pods, failed_indexes)
    phase = JobPhase.RUNNING if int(status.get("ready", 0)) > 0 else JobPhase.PENDING
    return JobObservation(name, phase, failed_pods=failed_pods, pods=pods, failed_indexes=failed_indexes)


# --- conditions ---------------------------------------------------------------


@dataclass(frozen=True)
class Cond:
    """One condition to set: type, status, reason, message."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def with_conditions(status: StatusT, now: datetime, *conditions: Cond) -> StatusT:
    """``status`` with these conditions set, the others kept; lastTransitionTime only moves on change."""
    updated: list[Condition] = list(status.conditions)
    for cond in conditions:
        updated = set_condition(updated, cond.type, cond.status, cond.reason, cond.message, now)
    return status.model_copy(update={"conditions": updated})


def _holds(conditions: Sequence[Condition], type: str) -> bool:
    condition = find_condition(conditions, type)
    return condition is not None and condition.status == ConditionStatus.TRUE


def is_started(status: ResourceStatus) -> bool:
    """Whether the run's Job was created: observedGeneration records the spec it runs."""
    return status.observed_generation is not None


def is_finished(status: ResourceStatus) -> bool:
    """Whether the run reached its end (Ready, or Failed): nothing more to watch."""
    return _holds(status.conditions, READY) or has_failed(status)


def has_failed(status: ResourceStatus) -> bool:
    """Whether the run ended in failure."""
    return _holds(status.conditions, FAILED)


def ready_condition(status: ResourceStatus) -> Condition | None:
    """The Ready condition, which summarises the resource's state."""
    return find_condition(status.conditions, READY)


def needs_polling(status: ResourceStatus) -> bool:
    """Only runs that started and have not finished have a Job worth reading."""
    return is_started(status) and not is_finished(status)


def waiting(status: StatusT, reason: str, message: str, now: datetime) -> StatusT:
    """Ready=False while a reference is bad or missing; the handler retries later."""
    return with_conditions(status, now, Cond(READY, ConditionStatus.FALSE, reason, message))


def started(status: StatusT, generation: int | None) -> StatusT:
    """Record the generation the run's Job was built from."""
    return status.model_copy(update={"observed_generation": generation or 0})


def run_spec_annotation(spec: Mapping[str, Any]) -> str:
    """The spec a run started from, as the value of RUN_SPEC_ANNOTATION (canonical JSON)."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def run_spec(annotations: Mapping[str, str]) -> dict[str, Any] | None:
    """The spec a run started from, if it was recorded."""
    recorded = annotations.get(RUN_SPEC_ANNOTATION)
    return dict(json.loads(recorded)) if recorded else None


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Top-level spec fields that differ and that a run depends on, as ``spec.field`` paths."""
    keys = sorted((set(old) | set(new)) - MUTABLE_FIELDS)
    return [f"spec.{key}" for key in keys if old.get(key) != new.get(key)]


def spec_change(
    status: StatusT, started_from: Mapping[str, Any] | None, spec: Mapping[str, Any], kind: str, now: datetime
) -> StatusT:
    """SpecChangeRefused=True while the spec differs from the one the run started from.

    A run keeps that spec: restarting a search silently would throw away
    node-hours, and changing a Dataset would change a version trainings already
    use; re-creating the resource is the explicit way. The condition is derived
    from the resource alone, so every handler computes the same one, and putting
    the spec back clears it.
    """
    if started_from is None or not is_started(status):
        return status
    fields = changed_fields(started_from, spec)
    if fields:
        finished = is_finished(status)
        message = (
            f"{', '.join(fields)} changed after the run started; the run {'finished' if finished else 'goes on'} "
            f"with the spec of generation {status.observed_generation}. Delete and re-create the {kind} to run "
            "with the new spec"
        )
        reason = "RunFinished" if finished else "RunInProgress"
        return with_conditions(status, now, Cond(SPEC_CHANGE_REFUSED, ConditionStatus.TRUE, reason, message))
    if find_condition(status.conditions, SPEC_CHANGE_REFUSED) is None:
        return status
    message = "the spec matches the one the run started from"
    return with_conditions(status, now, Cond(SPEC_CHANGE_REFUSED, ConditionStatus.FALSE, "SpecMatchesRun", message))


def logs_command(job: JobObservation) -> str:
    """The kubectl command that shows a Job's logs: of its one pod, or of the pods of its failed index(es)."""
    if job.pods == 1:
        return f"kubectl logs job/{job.name}"
    selector = f"{JOB_NAME_LABEL}={job.name}"
    if job.failed_indexes.isdigit():
        selector += f",{JOB_INDEX_LABEL}={job.failed_indexes}"
    return f"kubectl logs --prefix -l {selector}"


def _failure(status: StatusT, job: JobObservation, activity: str, what: str, now: datetime) -> StatusT:
    """The conditions of a failed Job: Failed=True with a user-facing reason."""
    reason = _FAILURE_REASONS.get(job.reason, job.reason or "JobFailed")
    detail = f": {job.message}" if job.message else ""
    cause = f"{job.reason or 'no reason given'}{detail}"
    message = f"the {what} Job {job.name} failed ({cause}); see `{logs_command(job)}`"
    if reason == "InvalidInput":
        message = f"the {what} rejected its input; `{logs_command(job)}` says why"
        if job.pods > 1:
            message += f" ({job.message or 'no detail'})"
    return _failed(status, activity, reason, message, now)


def _failed(status: StatusT, activity: str, reason: str, message: str, now: datetime) -> StatusT:
    """A run that ended in failure: ``activity`` False, Failed True, Ready False, all with one reason."""
    return with_conditions(
        status,
        now,
        Cond(activity, ConditionStatus.FALSE, FAILED, message),
        Cond(FAILED, ConditionStatus.TRUE, reason, message),
        Cond(READY, ConditionStatus.FALSE, reason, message),
    )


def _in_flight(
    status: StatusT, job: JobObservation, activity: str, what: str, now: datetime, *, detail: str = ""
) -> StatusT:
    """The conditions of a Job that is missing, pending or running (``detail``: how far a running one is)."""
    if job.phase is JobPhase.MISSING:
        message = f"the {what} Job {job.name} is gone; re-creating it"
        return with_conditions(status, now, Cond(READY, ConditionStatus.FALSE, "JobMissing", message))
    retries = f" ({job.failed_pods} pod failures so far)" if job.failed_pods else ""
    state, reason = (
        ("running", "JobRunning") if job.phase is JobPhase.RUNNING else ("waiting for its pods", "JobPending")
    )
    spread = f" ({job.pods} pods)" if job.pods > 1 else ""
    message = f"the {what} Job {job.name}{spread} is {state}{retries}"
    if detail and job.phase is JobPhase.RUNNING:
        message += f": {detail}"
    return with_conditions(
        status,
        now,
        Cond(activity, ConditionStatus.TRUE, reason, message),
        Cond(READY, ConditionStatus.FALSE, activity, message),
    )


def _result_missing(status: StatusT, job: JobObservation, activity: str, error: str, now: datetime) -> StatusT:
    """A Job that succeeded without results the operator can read: keep Ready=False and retry."""
    message = f"the Job {job.name} succeeded but its results cannot be read yet: {error}"
    return with_conditions(
        status,
        now,
        Cond(activity, ConditionStatus.FALSE, "Completed", f"the Job {job.name} succeeded"),
        Cond(READY, ConditionStatus.FALSE, "ResultMissing", message),
    )


# --- Dataset ------------------------------------------------------------------


def dataset_status(
    status: DatasetStatus,
    job: JobObservation,
    result: ImportResult | None,
    now: datetime,
    *,
    error: str = "",
    progress: ImportProgress | None = None,
) -> DatasetStatus:
    """A Dataset's status from its import Job, how far a running import is, and, once it succeeded, its result."""
    if job.phase is not JobPhase.MISSING:
        status = status.model_copy(update={"import_pods": job.pods})
    if job.phase is JobPhase.FAILED and _FAILURE_REASONS.get(job.reason) == SLICE_FAILED:
        return _slice_failed(status, job, now)
    if job.phase is JobPhase.FAILED:
        return _failure(status, job, IMPORTING, "import", now)
    if job.phase is not JobPhase.SUCCEEDED:
        return _in_flight(status, job, IMPORTING, "import", now, detail=progress.describe() if progress else "")
    if result is None:
        return _result_missing(status, job, IMPORTING, error or "no latest.json", now)
    report = result.report
    message = (
        f"imported {report.kept} of {report.total} images as {result.version} ({report.rejected} rejected, "
        f"{report.duplicates} duplicates, {report.conflicts} with conflicting labels)"
    )
    counts = DatasetCounts(
        total=report.kept, rejected=report.rejected, duplicates=report.duplicates, per_label=report.per_label
    )
    done = status.model_copy(update={"version": result.version, "counts": counts, "report_uri": result.report_uri})
    return with_conditions(
        done,
        now,
        Cond(IMPORTING, ConditionStatus.FALSE, "Completed", f"the import Job {job.name} succeeded"),
        _data_warnings(report),
        Cond(READY, ConditionStatus.TRUE, "Imported", message),
    )


def _slice_failed(status: DatasetStatus, job: JobObservation, now: datetime) -> DatasetStatus:
    """A fanned-out import whose slice(s) ran out of retries: which, of how many, and where their logs are.

    The version needs every slice, so the Job stops at the first one lost (and pod 0 stops waiting for it).
    """
    indexes = job.failed_indexes or "?"
    several = not indexes.isdigit()
    message = (
        f"the pod{'s' if several else ''} of slice{'s' if several else ''} {indexes} (of {job.pods}) "
        f"of the import Job {job.name} failed and ran out of retries, so the import stopped; "
        f"`{logs_command(job)}` says why"
    )
    return _failed(status, IMPORTING, SLICE_FAILED, message, now)


def _data_warnings(report: ImportReportSummary) -> Cond:
    if not report.warnings:
        return Cond(DATA_WARNINGS, ConditionStatus.FALSE, "NoWarnings", "the import found nothing to warn about")
    reason = report.warnings[0].reason if len(report.warnings) == 1 else "SeveralWarnings"
    return Cond(DATA_WARNINGS, ConditionStatus.TRUE, reason, "; ".join(w.message for w in report.warnings))


# --- TrainingJob --------------------------------------------------------------


def _describe_progress(progress: Progress, budget_milli_node_hours: int) -> str:
    trials = progress.trials
    text = (
        f"{trials.done} trials done, {trials.running} running, {trials.pruned} pruned, "
        f"{trials.stopped_by_budget} stopped by the budget"
    )
    if progress.best is not None:
        best = progress.best
        text += f"; best {best.metric} {best.value:.4g} (trial {best.trial}, {best.architecture})"
    return f"{text}; {progress.milli_node_hours_used} of {budget_milli_node_hours} milli node-hours used"


def training_status(
    status: TrainingJobStatus,
    job: JobObservation,
    progress: Progress | None,
    budget_milli_node_hours: int,
    now: datetime,
    *,
    error: str = "",
) -> TrainingJobStatus:
    """A TrainingJob's status from its search Job and the trainer's progress.json.

    A run whose progress says Succeeded is done even when its Job is already gone
    (cleaned up by its TTL while the operator was away).
    """
    if progress is not None:
        update: dict[str, Any] = {
            "trials": progress.trials,
            "best": progress.best or status.best,
            "milli_node_hours_used": progress.milli_node_hours_used,
            "search_milli_node_hours_used": progress.search_milli_node_hours_used,
            "final_fit_milli_node_hours_used": progress.final_fit_milli_node_hours_used,
        }
        if progress.artifacts is not None:
            update["artifacts"] = Artifacts.model_validate(progress.artifacts)
        status = status.model_copy(update=update)
    if (said := _trainer_said(status, job, progress, budget_milli_node_hours, now)) is not None:
        return said
    if job.phase is JobPhase.FAILED:
        return _failure(status, job, SEARCHING, "search", now)
    done = progress is not None and progress.succeeded
    if job.phase is JobPhase.SUCCEEDED or (job.phase is JobPhase.MISSING and done):
        if progress is None or not progress.succeeded:
            return _result_missing(status, job, SEARCHING, error or "progress.json does not say Succeeded", now)
        message = "search finished: " + _describe_progress(progress, budget_milli_node_hours)
        return with_conditions(
            status,
            now,
            Cond(SEARCHING, ConditionStatus.FALSE, "Completed", f"the search Job {job.name} succeeded"),
            Cond(READY, ConditionStatus.TRUE, SUCCEEDED_PHASE, message),
        )
    if job.phase is JobPhase.RUNNING and progress is not None:
        message = _describe_progress(progress, budget_milli_node_hours)
        return with_conditions(
            status,
            now,
            Cond(SEARCHING, ConditionStatus.TRUE, SEARCHING, message),
            Cond(READY, ConditionStatus.FALSE, SEARCHING, message),
        )
    return _in_flight(status, job, SEARCHING, "search", now)


def _trainer_said(
    status: TrainingJobStatus, job: JobObservation, progress: Progress | None, budget: int, now: datetime
) -> TrainingJobStatus | None:
    """The status progress.json's own phase decides, if it names a failure: a refused budget, a lost rank."""
    if progress is not None and progress.phase == BUDGET_TOO_SMALL_PHASE:
        return _budget_too_small(status, progress, budget, now)
    if progress is not None and progress.phase == RANK_LOST_PHASE and job.phase is not JobPhase.SUCCEEDED:
        return _rank_lost(status, job, progress, now)
    return None


def _budget_too_small(
    status: TrainingJobStatus, progress: Progress, budget_milli_node_hours: int, now: datetime
) -> TrainingJobStatus:
    """The trainer refused the budget before training: the run has failed, saying why and what would work."""
    message = (
        f"spec.budgetMilliNodeHours {budget_milli_node_hours} cannot train and validate any model on this "
        f"dataset and device; about {progress.minimum_budget_milli_node_hours} would (an estimate)"
    )
    return with_conditions(
        status,
        now,
        Cond(SEARCHING, ConditionStatus.FALSE, BUDGET_TOO_SMALL_PHASE, message),
        Cond(READY, ConditionStatus.FALSE, BUDGET_TOO_SMALL_PHASE, message),
        Cond(FAILED, ConditionStatus.TRUE, BUDGET_TOO_SMALL_PHASE, message),
    )


def _rank_lost(status: TrainingJobStatus, job: JobObservation, progress: Progress, now: datetime) -> TrainingJobStatus:
    """A rank of the data-parallel final fit died or never joined: retried from the checkpoint, or, out of
    retries, failed; either way the TrainingJob says which rank and how."""
    cause = f"a rank of the data-parallel final fit was lost: {progress.message or 'no detail'}"
    if job.phase is JobPhase.FAILED:
        message = f"{cause}; the Job {job.name} is out of retries ({job.reason or 'failed'})"
        return with_conditions(
            status,
            now,
            Cond(SEARCHING, ConditionStatus.FALSE, RANK_LOST_PHASE, message),
            Cond(READY, ConditionStatus.FALSE, RANK_LOST_PHASE, message),
            Cond(FAILED, ConditionStatus.TRUE, RANK_LOST_PHASE, message),
        )
    message = f"{cause}; the Job {job.name} retries from the last checkpoint ({job.failed_pods} pod failures so far)"
    return with_conditions(status, now, Cond(READY, ConditionStatus.FALSE, RANK_LOST_PHASE, message))


# --- patches ------------------------------------------------------------------


def status_patch(old: ResourceStatus, new: ResourceStatus) -> dict[str, Any]:
    """The merge patch of ``status`` that turns ``old`` into ``new``: changed top-level fields only.

    An empty patch means nothing changed, and kopf then sends no request.
    """
    before, after = _wire(old), _wire(new)
    patch = {key: value for key, value in after.items() if before.get(key) != value}
    patch |= dict.fromkeys(set(before) - set(after))
    return patch


def _wire(status: ResourceStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)
