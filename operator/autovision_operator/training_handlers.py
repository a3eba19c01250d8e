"""kopf handlers of TrainingJobs: a search Job on a Ready Dataset, its progress as status (see ``runs``).

A finished search with ``spec.deploy`` gets its ModelDeployment, and
``artifactPolicy: Delete`` removes the run's files before the resource goes.
A ``spec.baseModel`` must be a finished run whose labels and task are the
Dataset's before the Job starts: until then Ready is False (BaseModelNotReady,
BaseModelMismatch) and nothing else changes; the trainer checks again.
"""

from __future__ import annotations

from typing import Any

import kopf

from autovision.contract.files import ModelCard, Progress
from autovision.contract.keys import MODEL_CARD, model_card_key, progress_key, run_prefix
from autovision.resources import GROUP, VERSION, ArtifactPolicy, Dataset, ModelDeployment, TrainingJob
from autovision.storage import Storage
from autovision_operator import builders, runs
from autovision_operator.kube import ChildConflictError
from autovision_operator.metrics import MILLI_NODE_HOURS
from autovision_operator.reconcile import (
    Context,
    Logger,
    NotReadyError,
    handler,
    load,
    now,
    read_stored,
    referenced,
    storage_available,
    write,
)
from autovision_operator.status import (
    JobPhase,
    has_failed,
    is_finished,
    is_started,
    observe_job,
    ready_condition,
    started,
    training_status,
)

TRAINING_JOBS = (GROUP, VERSION, TrainingJob.info.plural)
KIND = "TrainingJob"


def register(registry: kopf.OperatorRegistry, interval: float) -> None:
    """Register the TrainingJob handlers, with the finalizer of ``artifactPolicy: Delete``."""
    runs.register(
        registry, TRAINING_JOBS, interval, start=start_search, poll=poll_search, refuse=refuse_training_change
    )
    kopf.on.delete(*TRAINING_JOBS, when=_deletes_artifacts, retries=10, registry=registry)(delete_artifacts)


def _ready_dataset(context: Context, training_job: TrainingJob) -> Dataset:
    """The referenced Dataset once it exists and has a version; until then, NotReadyError with a reason."""
    namespace, name = str(training_job.metadata.namespace), training_job.spec.dataset_ref.name
    dataset = referenced(context.kube, Dataset, namespace, name, not_ready="DatasetNotReady")
    if not dataset.status.version:
        ready = ready_condition(dataset.status)
        detail = f" ({ready.reason}: {ready.message})" if ready else ""
        raise NotReadyError("DatasetNotReady", f"Dataset {name} has no imported version yet{detail}")
    return dataset


def _base_model(context: Context, training_job: TrainingJob, dataset: Dataset) -> str | None:
    """The run ``spec.baseModel`` names, as the trainer's ``--base-model`` takes it, once it is a finished run
    whose labels and task are the Dataset's; until then NotReadyError BaseModelNotReady or BaseModelMismatch."""
    ref, namespace = training_job.spec.base_model, str(training_job.metadata.namespace)
    if ref is None:
        return None
    if ref.training_job is not None:
        base = _finished_training_job(context, namespace, ref.training_job)
        target = run_prefix(namespace, ref.training_job, str(base.metadata.uid))
        storage, named = context.storage(), f"TrainingJob {ref.training_job}"
        card = read_stored(storage, model_card_key(target))
    else:  # a run's URI, or its model directory's
        target = named = str(ref.uri)
        with storage_available(f"read {target}"):
            storage = Storage(target, context.storage().settings)
        card = next(filter(None, (read_stored(storage, key) for key in (model_card_key(""), MODEL_CARD))), None)
    if card is None:
        raise NotReadyError("BaseModelNotReady", f"spec.baseModel: {named} has no model card: it is not finished")
    counts = dataset.status.counts
    labels = sorted(counts.per_label) if counts is not None else []
    problem = ModelCard.model_validate(card).mismatch(labels, dataset.spec.task)
    if problem is not None:
        message = f"spec.baseModel {named} does not fit Dataset {dataset.metadata.name}: {problem}"
        raise NotReadyError("BaseModelMismatch", message)
    return target


def _finished_training_job(context: Context, namespace: str, name: str) -> TrainingJob:
    """A base TrainingJob that finished successfully; NotReadyError BaseModelNotReady until it has."""
    try:
        base = referenced(context.kube, TrainingJob, namespace, name, not_ready="BaseModelNotReady")
    except NotReadyError as error:
        raise NotReadyError("BaseModelNotReady", f"spec.baseModel: {error.message}") from None
    if not is_finished(base.status) or has_failed(base.status):
        state = "failed" if has_failed(base.status) else "not finished"
        raise NotReadyError("BaseModelNotReady", f"spec.baseModel: TrainingJob {name} has {state}")
    return base


def _ensure_search_job(context: Context, body: kopf.Body, training_job: TrainingJob) -> dict[str, Any]:
    """Check every reference of a TrainingJob, then create or adopt its search Job."""
    dataset = _ready_dataset(context, training_job)
    runs.require_secret(context, dataset)
    base_model = _base_model(context, training_job, dataset)
    try:
        if training_job.spec.resources.nodes > 1:
            context.kube.ensure_child(builders.build_search_service(training_job))
        job = builders.build_training_job(training_job, dataset, context.config, base_model)
        return runs.ensure_job(context, body, job)
    except ChildConflictError as error:
        raise NotReadyError("JobConflict", str(error)) from None


@handler(KIND)
def start_search(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Create (or adopt) a TrainingJob's search Job once its Dataset is Ready."""
    context: Context = memo.context
    training_job = load(TrainingJob, body, patch)
    if is_started(training_job.status):
        return
    job = _ensure_search_job(context, body, training_job)
    name = builders.search_job_name(str(training_job.metadata.name))
    first = started(training_job.status, training_job.metadata.generation)
    budget = training_job.spec.budget_milli_node_hours
    write(patch, training_job.status, training_status(first, observe_job(name, job), None, budget, now()))
    runs.record_run_spec(body, patch)


@handler(KIND)
def poll_search(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    """Copy the search Job's state and the trainer's progress.json into status; deploy on success."""
    context: Context = memo.context
    training_job = load(TrainingJob, body, patch)
    meta, old = training_job.metadata, training_job.status
    name = builders.search_job_name(str(meta.name))
    job = observe_job(name, context.kube.read_job(str(meta.namespace), name))
    progress, error = None, ""
    try:
        progress = read_progress(context.storage(), str(meta.namespace), str(meta.name), str(meta.uid))
    except runs.UNREADABLE as exc:
        logger.warning("cannot read the progress of Job %s: %s", name, exc)
        error = str(exc)
    new = training_status(old, job, progress, training_job.spec.budget_milli_node_hours, now(), error=error)
    new = runs.with_spec_change(new, training_job, body)
    if is_finished(new) and not has_failed(new):
        _deploy(context, body, training_job)
    write(patch, old, new)
    runs.report(body, KIND, job, old, new)
    MILLI_NODE_HOURS.labels(str(meta.namespace)).inc(max(0, new.milli_node_hours_used - old.milli_node_hours_used))
    if job.phase is JobPhase.MISSING and not is_finished(new):
        kopf.warn(body, reason="JobMissing", message=f"Job {name} is gone; re-creating it")
        _ensure_search_job(context, body, training_job)


def read_progress(storage: Storage, namespace: str, name: str, uid: str) -> Progress | None:
    """The trainer's progress.json of this run, or None before it wrote one."""
    progress = read_stored(storage, progress_key(run_prefix(namespace, name, uid)))
    return None if progress is None else Progress.model_validate(progress)


def _deploy(context: Context, body: kopf.Body, training_job: TrainingJob) -> None:
    """``spec.deploy``: create (or adopt) the ModelDeployment that serves the trained model."""
    if training_job.spec.deploy is None:
        return
    deployment = builders.build_model_deployment(training_job)
    _, created = context.kube.ensure_resource(ModelDeployment.info.plural, deployment)
    if created:
        nodes = training_job.spec.deploy.nodes
        message = f"created ModelDeployment {deployment['metadata']['name']} on {nodes} node(s)"
        kopf.info(body, reason="Deployed", message=message)


@handler(KIND)
def refuse_training_change(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """A running or finished search keeps its spec: node-hours already spent are not thrown away."""
    runs.refuse(TrainingJob, body, patch)


def _deletes_artifacts(spec: kopf.Spec, **_: Any) -> bool:
    """kopf filter (and thereby the finalizer): only runs whose artifacts go with them."""
    return spec.get("artifactPolicy") == ArtifactPolicy.DELETE.value


@handler(KIND)
def delete_artifacts(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """``artifactPolicy: Delete``: remove the run's stored artifacts before the resource goes."""
    context: Context = memo.context
    meta = body.metadata
    prefix = run_prefix(str(meta.namespace), str(meta.name), str(meta.uid))
    with storage_available(f"delete {prefix}"):
        context.storage().delete_prefix(prefix)
    kopf.info(body, reason="ArtifactsDeleted", message=f"deleted {prefix}")
