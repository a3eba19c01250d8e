"""The pure mapping from (Job status, trainer files) to resource status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from autovision.contract.files import (
    BUDGET_TOO_SMALL_PHASE,
    RANK_LOST_PHASE,
    ImportProgress,
    ImportReportSummary,
    ImportWarning,
    Progress,
)
from autovision.resources import DatasetStatus, ResourceStatus, TrainingJobStatus, find_condition
from autovision_operator.status import (
    RUN_SPEC_ANNOTATION,
    ImportResult,
    JobObservation,
    JobPhase,
    changed_fields,
    dataset_status,
    is_finished,
    needs_polling,
    observe_job,
    run_spec,
    run_spec_annotation,
    spec_change,
    started,
    status_patch,
    training_status,
    waiting,
)

T0 = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)
JOB = "flowers-import"


def job_with(status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": JOB}, "status": status}


def condition(status: ResourceStatus, type: str) -> tuple[str, str]:
    found = find_condition(status.conditions, type)
    assert found is not None, f"no {type} condition in {status.conditions}"
    return found.status.value, found.reason


COMPLETE = {
    "succeeded": 1,
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
        {"type": "Complete", "status": "True", "reason": "CompletionsReached"},
    ],
}


def failed(reason: str, message: str = "") -> JobObservation:
    return JobObservation(JOB, JobPhase.FAILED, reason, message)


# --- observe_job -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "phase"),
    [
        (None, JobPhase.MISSING),
        (job_with({}), JobPhase.PENDING),
        (job_with({"active": 1, "ready": 0}), JobPhase.PENDING),
        (job_with({"active": 1, "ready": 1}), JobPhase.RUNNING),
        (job_with(COMPLETE), JobPhase.SUCCEEDED),
        # Interim conditions: the pods are still terminating, the Job has not ended.
        (
            job_with({"active": 1, "ready": 1, "conditions": [{"type": "FailureTarget", "status": "True"}]}),
            JobPhase.RUNNING,
        ),
        (job_with({"conditions": [{"type": "SuccessCriteriaMet", "status": "True"}]}), JobPhase.PENDING),
        (job_with({"conditions": [{"type": "Complete", "status": "False"}]}), JobPhase.PENDING),
    ],
)
def test_observe_job_phases(job: dict[str, Any] | None, phase: JobPhase) -> None:
    assert observe_job(JOB, job).phase is phase


def test_observe_job_keeps_the_failure_reason() -> None:
    job = job_with(
        {
            "failed": 1,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy"},
                {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit code 2"},
            ],
        }
    )
    assert observe_job(JOB, job) == JobObservation(JOB, JobPhase.FAILED, "PodFailurePolicy", "exit code 2", 1)


# --- Dataset -----------------------------------------------------------------------


def import_result() -> ImportResult:
    report = ImportReportSummary.model_validate(
        {
            "total": 110,
            "kept": 100,
            "rejected": 4,
            "duplicates": 5,
            "conflicts": 1,
            "perLabel": {"daisy": {"train": 40, "validation": 5, "test": 5}, "rose": {"train": 40, "validation": 5}},
            "imbalanceRatio": 1.0,
        }
    )
    return ImportResult("sha256-abc", report, "s3://autovision/datasets/flowers/sha256-abc/report.json")


@pytest.mark.parametrize(("phase", "reason"), [(JobPhase.PENDING, "JobPending"), (JobPhase.RUNNING, "JobRunning")])
def test_dataset_importing(phase: JobPhase, reason: str) -> None:
    status = dataset_status(DatasetStatus(), JobObservation(JOB, phase), None, T0)
    assert condition(status, "Importing") == ("True", reason)
    assert condition(status, "Ready") == ("False", "Importing")
    assert status.version is None
    assert needs_polling(started(status, 1))


def test_a_running_import_says_how_far_it_is() -> None:
    progress = ImportProgress(stage="Decoding and validating images", completed=12000, total=60000)
    running = dataset_status(DatasetStatus(), JobObservation(JOB, JobPhase.RUNNING), None, T0, progress=progress)
    message = next(c.message for c in running.conditions if c.type == "Importing")
    assert message.endswith(": decoding and validating images: 12,000 of 60,000")
    pending = dataset_status(DatasetStatus(), JobObservation(JOB, JobPhase.PENDING), None, T0, progress=progress)
    assert "12,000" not in next(c.message for c in pending.conditions if c.type == "Importing")
    assert ImportProgress(stage="Writing manifest").describe() == "writing manifest"


def test_dataset_imported() -> None:
    status = dataset_status(DatasetStatus(), JobObservation(JOB, JobPhase.SUCCEEDED), import_result(), T0)
    assert condition(status, "Ready") == ("True", "Imported")
    assert condition(status, "Importing") == ("False", "Completed")
    assert status.version == "sha256-abc"
    assert status.report_uri == "s3://autovision/datasets/flowers/sha256-abc/report.json"
    assert status.counts is not None
    assert (status.counts.total, status.counts.rejected, status.counts.duplicates) == (100, 4, 5)
    assert status.counts.per_label["rose"].validation == 5
    assert status.counts.per_label["rose"].test == 0
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None
    assert "100 of 110 images" in ready.message
    assert is_finished(status)
    assert not needs_polling(started(status, 1))
    assert condition(status, "DataWarnings") == ("False", "NoWarnings")


def test_dataset_import_warnings_become_a_condition() -> None:
    result = import_result()
    warnings = [
        {"reason": "FewImages", "message": "2 label(s) under 100 images: daisy, rose"},
        {"reason": "RejectedFiles", "message": "4 file(s) rejected: see rejects in report.json"},
    ]
    report = result.report.model_copy(update={"warnings": [ImportWarning.model_validate(w) for w in warnings]})
    imported = ImportResult(result.version, report, result.report_uri)
    status = dataset_status(DatasetStatus(), JobObservation(JOB, JobPhase.SUCCEEDED), imported, T0)
    assert condition(status, "DataWarnings") == ("True", "SeveralWarnings")
    assert condition(status, "Ready") == ("True", "Imported")
    warning = find_condition(status.conditions, "DataWarnings")
    assert warning is not None
    assert "under 100 images" in warning.message
    assert "4 file(s) rejected" in warning.message


def test_dataset_success_without_readable_result_keeps_waiting() -> None:
    job = JobObservation(JOB, JobPhase.SUCCEEDED)
    status = dataset_status(DatasetStatus(), job, None, T0, error="latest.json does not exist")
    assert condition(status, "Ready") == ("False", "ResultMissing")
    assert status.version is None
    assert not is_finished(status)


@pytest.mark.parametrize(
    ("job_reason", "reason"),
    [
        ("PodFailurePolicy", "InvalidInput"),
        ("BackoffLimitExceeded", "BackoffLimitExceeded"),
        ("DeadlineExceeded", "DeadlineExceeded"),
        ("", "JobFailed"),
    ],
)
def test_dataset_import_failed(job_reason: str, reason: str) -> None:
    status = dataset_status(DatasetStatus(), failed(job_reason, "details"), None, T0)
    assert condition(status, "Failed") == ("True", reason)
    assert condition(status, "Ready") == ("False", reason)
    assert condition(status, "Importing") == ("False", "Failed")
    message = find_condition(status.conditions, "Failed")
    assert message is not None
    assert f"kubectl logs job/{JOB}" in message.message
    assert is_finished(status)


INDEXED = {"completionMode": "Indexed", "completions": 8, "parallelism": 8, "backoffLimitPerIndex": 2}


def test_an_import_over_several_pods_says_how_many() -> None:
    running = observe_job(JOB, {**job_with({"active": 8, "ready": 8, "failed": 1}), "spec": INDEXED})
    assert (running.pods, running.failed_pods) == (8, 1)
    status = dataset_status(DatasetStatus(), running, None, T0)
    assert status.import_pods == 8
    importing = find_condition(status.conditions, "Importing")
    assert importing is not None
    assert importing.message == f"the import Job {JOB} (8 pods) is running (1 pod failures so far)"
    single = dataset_status(DatasetStatus(), observe_job(JOB, job_with({"active": 1, "ready": 1})), None, T0)
    assert single.import_pods == 1


def test_a_slice_out_of_retries_fails_the_import_naming_it_and_its_logs() -> None:
    # What the Job controller writes when an index exceeds backoffLimitPerIndex under maxFailedIndexes 0.
    lost = {
        "failed": 3,
        "failedIndexes": "5",
        "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "MaxFailedIndexesExceeded"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "MaxFailedIndexesExceeded",
                "message": "Job has exceeded the specified maximal number of failed indexes",
            },
        ],
    }
    status = dataset_status(DatasetStatus(), observe_job(JOB, {**job_with(lost), "spec": INDEXED}), None, T0)
    assert condition(status, "Failed") == ("True", "SliceFailed")
    assert condition(status, "Ready") == ("False", "SliceFailed")
    assert condition(status, "Importing") == ("False", "Failed")
    failure = find_condition(status.conditions, "Failed")
    assert failure is not None
    assert "slice 5 (of 8)" in failure.message
    selector = f"batch.kubernetes.io/job-name={JOB},batch.kubernetes.io/job-completion-index=5"
    assert f"`kubectl logs --prefix -l {selector}`" in failure.message
    assert is_finished(status)
    several = dataset_status(
        DatasetStatus(), observe_job(JOB, {**job_with(lost | {"failedIndexes": "1,5"}), "spec": INDEXED}), None, T0
    )
    message = next(c.message for c in several.conditions if c.type == "Failed")
    assert "slices 1,5 (of 8)" in message
    assert f"-l batch.kubernetes.io/job-name={JOB}`" in message, "the logs of every pod: two indexes failed"


def test_bad_input_in_one_slice_names_its_pod() -> None:
    message = "Container trainer for pod ml/flowers-import-3-x7k2p failed with exit code 2 matching FailJob rule"
    job = JobObservation(JOB, JobPhase.FAILED, "PodFailurePolicy", message, failed_pods=1, pods=8)
    status = dataset_status(DatasetStatus(), job, None, T0)
    assert condition(status, "Failed") == ("True", "InvalidInput")
    failure = find_condition(status.conditions, "Failed")
    assert failure is not None
    assert "flowers-import-3-x7k2p" in failure.message
    assert f"-l batch.kubernetes.io/job-name={JOB}`" in failure.message


def test_missing_job_is_reported() -> None:
    status = dataset_status(DatasetStatus(), JobObservation(JOB, JobPhase.MISSING), None, T0)
    assert condition(status, "Ready") == ("False", "JobMissing")
    assert not is_finished(status)


# --- TrainingJob -------------------------------------------------------------------

SEARCHING = {
    "phase": "Searching",
    "trials": {"done": 7, "running": 2, "pruned": 3},
    "best": {"trial": 5, "architecture": "efficientnet_lite0", "metric": "validationAccuracy", "value": 0.91},
    "milliNodeHoursUsed": 400,
    "updatedAt": "2026-11-23T12:00:00+00:00",
}
ARTIFACTS = {
    "model": "s3://autovision/runs/ml/flowers-run/u/model",
    "evaluation": "s3://autovision/runs/ml/flowers-run/u/model/evaluation.json",
    "tritonRepository": "s3://autovision/runs/ml/flowers-run/u/triton",
}
SUCCEEDED = SEARCHING | {
    "phase": "Succeeded",
    "trials": {"done": 12},
    "milliNodeHoursUsed": 950,
    "artifacts": ARTIFACTS,
}
SEARCH = "flowers-run-search"


def train(phase: JobPhase, progress: dict[str, Any] | None, **kwargs: Any) -> TrainingJobStatus:
    parsed = Progress.model_validate(progress) if progress else None
    return training_status(TrainingJobStatus(), JobObservation(SEARCH, phase, **kwargs), parsed, 1000, T0)


def test_search_waiting_for_pods() -> None:
    status = train(JobPhase.PENDING, None)
    assert condition(status, "Searching") == ("True", "JobPending")
    assert condition(status, "Ready") == ("False", "Searching")


def test_search_progress_is_copied_into_status() -> None:
    status = train(JobPhase.RUNNING, SEARCHING)
    assert condition(status, "Searching") == ("True", "Searching")
    assert condition(status, "Ready") == ("False", "Searching")
    assert (status.trials.done, status.trials.running, status.trials.pruned) == (7, 2, 3)
    assert status.best is not None
    assert status.best.value == 0.91
    assert status.best.architecture == "efficientnet_lite0"
    assert status.milli_node_hours_used == 400
    assert status.artifacts is None
    searching = find_condition(status.conditions, "Searching")
    assert searching is not None
    assert "400 of 1000 milli node-hours" in searching.message


def test_search_succeeded_with_artifacts() -> None:
    status = train(JobPhase.SUCCEEDED, SUCCEEDED)
    assert condition(status, "Ready") == ("True", "Succeeded")
    assert condition(status, "Searching") == ("False", "Completed")
    assert status.artifacts is not None
    assert status.artifacts.triton_repository == ARTIFACTS["tritonRepository"]
    assert status.milli_node_hours_used == 950
    assert status.trials.done == 12
    assert is_finished(status)


def test_search_success_without_final_progress_keeps_waiting() -> None:
    status = train(JobPhase.SUCCEEDED, SEARCHING)
    assert condition(status, "Ready") == ("False", "ResultMissing")
    assert not is_finished(status)


def test_finished_run_whose_job_was_cleaned_up_is_still_succeeded() -> None:
    assert condition(train(JobPhase.MISSING, SUCCEEDED), "Ready") == ("True", "Succeeded")
    assert condition(train(JobPhase.MISSING, SEARCHING), "Ready") == ("False", "JobMissing")


def test_search_rejected_its_input() -> None:
    status = train(JobPhase.FAILED, SEARCHING, reason="PodFailurePolicy", message="exit code 2")
    assert condition(status, "Failed") == ("True", "InvalidInput")
    assert condition(status, "Searching") == ("False", "Failed")
    assert status.milli_node_hours_used == 400  # what was spent stays visible
    assert is_finished(status)


def test_search_ran_out_of_time() -> None:
    status = train(JobPhase.FAILED, SEARCHING, reason="DeadlineExceeded", message="Job was active longer than")
    assert condition(status, "Ready") == ("False", "DeadlineExceeded")


def test_progress_keeps_the_best_trial_when_a_restart_has_none_yet() -> None:
    first = train(JobPhase.RUNNING, SEARCHING)
    restarted = Progress.model_validate({"phase": "Searching", "milliNodeHoursUsed": 410})
    status = training_status(first, JobObservation(SEARCH, JobPhase.RUNNING), restarted, 1000, T1)
    assert status.best == first.best


# --- conditions and patches --------------------------------------------------------


def test_same_observation_twice_changes_nothing() -> None:
    job = JobObservation(SEARCH, JobPhase.RUNNING)
    progress = Progress.model_validate(SEARCHING)
    first = training_status(TrainingJobStatus(), job, progress, 1000, T0)
    again = training_status(first, job, progress, 1000, T1)
    assert status_patch(first, again) == {}


def test_transition_time_moves_only_when_the_status_does() -> None:
    pending = dataset_status(DatasetStatus(), JobObservation(JOB, JobPhase.PENDING), None, T0)
    running = dataset_status(pending, JobObservation(JOB, JobPhase.RUNNING), None, T1)
    importing = find_condition(running.conditions, "Importing")
    assert importing is not None
    assert importing.last_transition_time == T0  # still True, only the reason changed
    done = dataset_status(running, JobObservation(JOB, JobPhase.SUCCEEDED), import_result(), T1)
    ready = find_condition(done.conditions, "Ready")
    assert ready is not None
    assert ready.last_transition_time == T1


def test_status_patch_carries_only_changes_in_wire_format() -> None:
    old = started(DatasetStatus(), 1)
    new = dataset_status(old, JobObservation(JOB, JobPhase.SUCCEEDED), import_result(), T0)
    patch = status_patch(old, new)
    assert set(patch) == {"conditions", "version", "counts", "reportUri", "importPods"}
    assert patch["counts"]["perLabel"]["daisy"] == {"train": 40, "validation": 5, "test": 5}
    assert patch["conditions"][0]["lastTransitionTime"] == "2026-11-23T12:00:00Z"
    assert status_patch(new, old)["version"] is None  # merge-patch deletion


def test_waiting_reports_the_reason() -> None:
    status = waiting(TrainingJobStatus(), "DatasetNotFound", "Dataset flowers not found in ml", T0)
    assert condition(status, "Ready") == ("False", "DatasetNotFound")
    assert not needs_polling(status)  # nothing started: the create handler retries, not the timer


# --- spec changes ------------------------------------------------------------------

RUN_SPEC = {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 1000, "artifactPolicy": "Retain"}


def in_flight() -> TrainingJobStatus:
    return started(train(JobPhase.RUNNING, SEARCHING), 1)


def test_recorded_run_spec_round_trips() -> None:
    annotations = {RUN_SPEC_ANNOTATION: run_spec_annotation(RUN_SPEC)}
    assert run_spec(annotations) == RUN_SPEC
    assert run_spec({}) is None


def test_spec_changes_before_the_run_are_accepted() -> None:
    status = TrainingJobStatus()
    changed = RUN_SPEC | {"budgetMilliNodeHours": 2000}
    assert spec_change(status, None, changed, "TrainingJob", T0) == status


def test_spec_changes_during_the_run_are_refused() -> None:
    changed = RUN_SPEC | {"budgetMilliNodeHours": 2000}
    refused = spec_change(in_flight(), RUN_SPEC, changed, "TrainingJob", T0)
    assert condition(refused, "SpecChangeRefused") == ("True", "RunInProgress")
    found = find_condition(refused.conditions, "SpecChangeRefused")
    assert found is not None
    assert "spec.budgetMilliNodeHours changed" in found.message
    assert "generation 1" in found.message
    assert condition(refused, "Searching") == ("True", "Searching")  # the run goes on


def test_spec_changes_after_the_run_are_refused() -> None:
    done = started(train(JobPhase.SUCCEEDED, SUCCEEDED), 1)
    refused = spec_change(done, RUN_SPEC, RUN_SPEC | {"resources": {"nodes": 2}}, "TrainingJob", T0)
    assert condition(refused, "SpecChangeRefused") == ("True", "RunFinished")


def test_putting_the_spec_back_clears_the_refusal() -> None:
    refused = spec_change(in_flight(), RUN_SPEC, RUN_SPEC | {"budgetMilliNodeHours": 2000}, "TrainingJob", T0)
    restored = spec_change(refused, RUN_SPEC, dict(RUN_SPEC), "TrainingJob", T1)
    assert condition(restored, "SpecChangeRefused") == ("False", "SpecMatchesRun")
    unchanged = in_flight()
    assert spec_change(unchanged, RUN_SPEC, dict(RUN_SPEC), "TrainingJob", T0) == unchanged


def test_deletion_settings_may_change_at_any_time() -> None:
    status = in_flight()
    assert spec_change(status, RUN_SPEC, RUN_SPEC | {"artifactPolicy": "Delete"}, "TrainingJob", T0) == status


def test_changed_fields() -> None:
    old = {"source": "s3://a", "task": "SingleLabel", "split": {"train": 80}}
    new = {"source": "s3://b", "task": "SingleLabel", "split": {"train": 70}, "storageSecretRef": {"name": "s"}}
    assert changed_fields(old, new) == ["spec.source", "spec.split", "spec.storageSecretRef"]
    assert changed_fields(old, dict(old)) == []


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


def test_a_lost_rank_is_one_condition_while_retried_and_a_failure_once_out_of_retries() -> None:
    progress = Progress(phase=RANK_LOST_PHASE, message="rank 3 did not join within 600 s", milli_node_hours_used=9)
    retrying = JobObservation("s", JobPhase.RUNNING, failed_pods=1)
    status = training_status(TrainingJobStatus(), retrying, progress, 40, T0)
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None
    assert (ready.status, ready.reason) == ("False", "RankLost")
    assert "rank 3 did not join within 600 s" in ready.message
    assert "retries from the last checkpoint (1 pod failures so far)" in ready.message
    assert not is_finished(status)
    failed_job = JobObservation("s", JobPhase.FAILED, "BackoffLimitExceeded")
    failed = find_condition(training_status(status, failed_job, progress, 40, T0).conditions, "Failed")
    assert failed is not None
    assert (failed.status, failed.reason) == ("True", "RankLost")
    assert "out of retries" in failed.message


def test_the_search_and_the_final_fit_shares_of_the_budget_reach_status() -> None:
    progress = Progress(
        phase="Succeeded", milli_node_hours_used=30, search_milli_node_hours_used=21, final_fit_milli_node_hours_used=9
    )
    status = training_status(TrainingJobStatus(), JobObservation("s", JobPhase.SUCCEEDED), progress, 40, T0)
    shares = status.model_dump(mode="json", by_alias=True)
    assert (shares["searchMilliNodeHoursUsed"], shares["finalFitMilliNodeHoursUsed"]) == (21, 9)
