"""kopf handlers of Datasets: an import Job per Dataset, and its result as status (see ``runs``).

The import Job fans out over ``spec.importPods`` pods, or over as many as the
source's size calls for (``import_plan``); the handler asks storage for that size.
"""

from __future__ import annotations

from typing import Any

import kopf

from autovision.contract.files import ImportProgress, ImportReportSummary, LatestVersion
from autovision.contract.keys import dataset_storage_name, import_progress_key, latest_key, report_key
from autovision.resources import GROUP, VERSION, Dataset
from autovision.storage import Storage, StorageUnavailableError, object_sizes
from autovision_operator import builders, runs
from autovision_operator.config import OperatorConfig
from autovision_operator.import_plan import default_import_pods
from autovision_operator.kube import ChildConflictError
from autovision_operator.reconcile import (
    STORAGE_ERRORS,
    Context,
    Logger,
    NotReadyError,
    handler,
    load,
    now,
    read_stored,
    storage_available,
    write,
)
from autovision_operator.status import (
    ImportResult,
    JobPhase,
    dataset_status,
    is_started,
    observe_job,
    started,
)

DATASETS = (GROUP, VERSION, Dataset.info.plural)
KIND = "Dataset"


def register(registry: kopf.OperatorRegistry, interval: float) -> None:
    """Register the Dataset handlers."""
    runs.register(registry, DATASETS, interval, start=start_import, poll=poll_import, refuse=refuse_dataset_change)


@handler(KIND)
def start_import(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    """Create (or adopt) a Dataset's import Job once its credentials Secret exists."""
    context: Context = memo.context
    dataset = load(Dataset, body, patch)
    if is_started(dataset.status):
        return
    runs.require_secret(context, dataset)
    pods = import_pods(context.config, dataset, logger)
    try:
        job = runs.ensure_job(context, body, builders.build_import_job(dataset, context.config, pods))
    except ChildConflictError as error:
        raise NotReadyError("JobConflict", str(error)) from None
    name = builders.import_job_name(str(dataset.metadata.name))
    new = dataset_status(started(dataset.status, dataset.metadata.generation), observe_job(name, job), None, now())
    write(patch, dataset.status, new)
    runs.record_run_spec(body, patch)


@handler(KIND)
def poll_import(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    """Copy the import Job's state and, once it succeeded, the import's result into status."""
    context: Context = memo.context
    dataset = load(Dataset, body, patch)
    name = builders.import_job_name(str(dataset.metadata.name))
    job = observe_job(name, context.kube.read_job(str(dataset.metadata.namespace), name))
    result, progress, error = None, None, ""
    stored_as = dataset_storage_name(str(dataset.metadata.namespace), str(dataset.metadata.name))
    try:
        if job.phase is JobPhase.SUCCEEDED:
            result = read_import_result(context.storage(), stored_as)
        elif job.phase is JobPhase.RUNNING:
            progress = read_import_progress(context.storage(), stored_as)
    except runs.UNREADABLE as exc:
        logger.warning("cannot read the state of Job %s: %s", name, exc)
        error = str(exc)
    new = dataset_status(dataset.status, job, result, now(), error=error, progress=progress)
    new = runs.with_spec_change(new, dataset, body)
    write(patch, dataset.status, new)
    runs.report(body, KIND, job, dataset.status, new)
    if job.phase is JobPhase.MISSING:
        kopf.warn(body, reason="JobMissing", message=f"Job {name} is gone; re-creating it")
        pods = import_pods(context.config, dataset, logger)
        runs.ensure_job(context, body, builders.build_import_job(dataset, context.config, pods))


def import_pods(config: OperatorConfig, dataset: Dataset, logger: Logger) -> int:
    """The pods of a Dataset's import: as its spec says, else as its Job ran (a re-created Job slices the
    source the same way), else by the source's size."""
    if dataset.spec.import_pods is not None:
        return dataset.spec.import_pods
    if dataset.status.import_pods is not None:
        return dataset.status.import_pods
    return default_import_pods(dataset.spec.source, source_size(config, dataset.spec.source, logger))


def source_size(config: OperatorConfig, source: str, logger: Logger) -> int | None:
    """The source's size in bytes, as the operator's own storage credentials see it; None when they cannot tell.

    Only a source an import may read is asked about: never the operator's own file
    system for a ``file://`` source that a cluster's imports refuse. Storage that
    cannot be reached is waited for like every other read here; a source these
    credentials may not read (the Dataset's Secret may hold others) or a prefix
    (no object of that name) has no size, and its import runs in one pod.
    """
    if source.split("://", 1)[0] not in config.import_uri_schemes:
        return None
    try:
        (size,) = object_sizes([source], config.storage_settings())
    except StorageUnavailableError as error:
        raise NotReadyError("StorageUnavailable", f"cannot read the size of {source}: {error}") from error
    except STORAGE_ERRORS as error:
        logger.info("cannot tell the size of %s (%s); its import runs in one pod", source, error)
        return None
    return size


def read_import_progress(storage: Storage, dataset: str) -> ImportProgress | None:
    """How far a running import is, or None before it wrote that."""
    progress = read_stored(storage, import_progress_key(dataset))
    return None if progress is None else ImportProgress.model_validate(progress)


def read_import_result(storage: Storage, dataset: str) -> ImportResult | None:
    """The newest version of a Dataset and its report, as the import Job left them; None before latest.json."""
    latest = read_stored(storage, latest_key(dataset))
    if latest is None:
        return None
    version = LatestVersion.model_validate(latest).version
    key = report_key(dataset, version)
    with storage_available(f"read {storage.uri(key)}"):
        report = storage.read_json(key)
    return ImportResult(version, ImportReportSummary.model_validate(report), storage.uri(key))


@handler(KIND)
def refuse_dataset_change(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """A Dataset's version is what trainings rely on: its spec is fixed once the import started."""
    runs.refuse(Dataset, body, patch)
