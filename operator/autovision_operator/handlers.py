"""kopf handlers: Datasets and TrainingJobs become Jobs, and Job progress becomes status.

Each handler is a thin layer of I/O around the pure builders (``builders``) and
the pure status mapping (``status``):

* on create, check the references, then create or adopt the child Job and
  record the generation it was built from (``status.observedGeneration``);
* a timer reads the Job and the trainer's files in storage and patches status
  while a run is in flight; it stops once the run finished;
* a spec change after the run started gets a SpecChangeRefused condition.

Every step is safe to repeat: children have deterministic names, an existing
child is adopted, and status is recomputed from what exists. ModelDeployments
are served by ``serving_handlers``, registered here too.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import kopf
from pydantic import ValidationError

from autovision.contract.files import ImportProgress, ImportReportSummary, LatestVersion, Progress
from autovision.contract.keys import (
    dataset_storage_name,
    import_progress_key,
    latest_key,
    progress_key,
    report_key,
    run_prefix,
)
from autovision.resources import (
    GROUP,
    VERSION,
    ArtifactPolicy,
    ConditionStatus,
    Dataset,
    ModelDeployment,
    ResourceError,
    ResourceStatus,
    TrainingJob,
    find_condition,
    parse_resource,
)
from autovision.storage import Storage, StorageError
from autovision_operator import builders
from autovision_operator.config import OperatorConfig
from autovision_operator.kube import ChildConflictError, Kube, connection_info, load_configuration
from autovision_operator.metrics import JOB_PHASES, MILLI_NODE_HOURS, RUNS_FINISHED, instrumented
from autovision_operator.status import (
    RUN_SPEC_ANNOTATION,
    SPEC_CHANGE_REFUSED,
    ImportResult,
    JobObservation,
    JobPhase,
    dataset_status,
    has_failed,
    is_finished,
    is_started,
    needs_polling,
    observe_job,
    ready_condition,
    run_spec,
    run_spec_annotation,
    spec_change,
    started,
    status_patch,
    training_status,
    waiting,
)

DATASETS = (GROUP, VERSION, Dataset.info.plural)
TRAINING_JOBS = (GROUP, VERSION, TrainingJob.info.plural)
STORAGE_ERRORS = (StorageError, ValidationError, OSError, KeyError)
ResourceT = TypeVar("ResourceT", Dataset, TrainingJob)
ParsedT = TypeVar("ParsedT", Dataset, TrainingJob, ModelDeployment)
StatusT = TypeVar("StatusT", bound=ResourceStatus)
# What kopf hands to handlers as ``logger``.
Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class Context:
    """What every handler needs, created once at start-up and kept in kopf's memo."""

    config: OperatorConfig
    kube: Kube

    def storage(self) -> Storage:
        """The storage root the trainer writes to, as the operator reads it."""
        return Storage(self.config.storage_root, self.config.storage_settings())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- shared steps -------------------------------------------------------------


def _load(model: type[ParsedT], body: kopf.Body, patch: kopf.Patch) -> ParsedT:
    """Parse the resource; an invalid one gets an InvalidSpec condition and no retry."""
    try:
        resource = parse_resource(body)
    except ResourceError as error:
        current = ResourceStatus.model_validate(body.get("status") or {})
        _write(patch, current, waiting(current, "InvalidSpec", str(error), _now()))
        kopf.warn(body, reason="InvalidSpec", message=str(error))
        raise kopf.PermanentError(str(error)) from None
    if not isinstance(resource, model):
        raise kopf.PermanentError(f"expected a {model.__name__}, got a {type(resource).__name__}")
    return resource


def _write(patch: kopf.Patch, old: ResourceStatus, new: ResourceStatus) -> None:
    """Put the status changes (only those) into kopf's patch, which kopf applies after the handler."""
    patch.status.update(status_patch(old, new))


def _wait(
    body: kopf.Body, patch: kopf.Patch, current: ResourceStatus, reason: str, message: str, *, delay: float
) -> NoReturn:
    """Report a bad reference as Ready=False with its reason, and retry after ``delay``.

    The event is posted when the reason first appears, not on every retry.
    """
    _write(patch, current, waiting(current, reason, message, _now()))
    _warn_once(body, current, reason, message)
    raise kopf.TemporaryError(message, delay=delay)


def _warn_once(body: kopf.Body, current: ResourceStatus, reason: str, message: str) -> None:
    """A warning event when the Ready condition's reason first becomes ``reason``, not on every retry."""
    previous = ready_condition(current)
    if previous is None or previous.reason != reason:
        kopf.warn(body, reason=reason, message=message)


def _ensure_job(context: Context, body: kopf.Body, job: dict[str, Any]) -> dict[str, Any]:
    """Create or adopt a child Job, telling the user when one was created."""
    existing, created = context.kube.ensure_job(job)
    if created:
        kopf.info(body, reason="JobCreated", message=f"created Job {job['metadata']['name']}")
    return existing


def _missing_secret(context: Context, dataset: Dataset) -> str | None:
    """The message for a missing credentials Secret, or None when the pods can start."""
    secret = builders.credentials_secret(dataset, context.config)
    namespace = str(dataset.metadata.namespace)
    if secret is None or context.kube.secret_exists(namespace, secret):
        return None
    return f"Secret {secret} (storage credentials of Dataset {dataset.metadata.name}) not found in {namespace}"


def _report(body: kopf.Body, kind: str, job: JobObservation, old: ResourceStatus, new: ResourceStatus) -> None:
    """Metrics for every poll; an event and a counter when the run just finished."""
    finished = is_finished(new)
    JOB_PHASES.observe(kind, str(body.metadata.namespace), str(body.metadata.name), None if finished else job.phase)
    ready = ready_condition(new)
    if is_finished(old) or not finished or ready is None:
        return
    if has_failed(new):
        RUNS_FINISHED.labels(kind, "Failed").inc()
        kopf.warn(body, reason=ready.reason, message=ready.message)
    else:
        RUNS_FINISHED.labels(kind, "Succeeded").inc()
        kopf.info(body, reason=ready.reason, message=ready.message)


def _refuse(model: type[ResourceT], body: kopf.Body, patch: kopf.Patch) -> None:
    """On a spec change: keep the run, and say so in a SpecChangeRefused condition and an event."""
    resource = _load(model, body, patch)
    new = _with_spec_change(resource.status, resource, body)
    _write(patch, resource.status, new)
    before = find_condition(resource.status.conditions, SPEC_CHANGE_REFUSED)
    after = find_condition(new.conditions, SPEC_CHANGE_REFUSED)
    if after is not None and after.status == ConditionStatus.TRUE and after != before:
        kopf.warn(body, reason=SPEC_CHANGE_REFUSED, message=after.message)


def _with_spec_change(status: StatusT, resource: Dataset | TrainingJob, body: kopf.Body) -> StatusT:
    """``status`` with SpecChangeRefused derived from the resource's current and recorded spec."""
    started_from = run_spec(resource.metadata.annotations)
    return spec_change(status, started_from, body.get("spec") or {}, type(resource).__name__, _now())


def _record_run_spec(body: kopf.Body, patch: kopf.Patch) -> None:
    """Keep the spec a run starts from on the resource, to tell later changes apart."""
    patch.metadata.annotations[RUN_SPEC_ANNOTATION] = run_spec_annotation(body.get("spec") or {})


def _needs_polling(status: kopf.Status, **_: Any) -> bool:
    """kopf filter: poll only resources whose run started and has not finished."""
    return needs_polling(ResourceStatus.model_validate(dict(status)))


# --- Dataset ------------------------------------------------------------------


@instrumented("Dataset")
def start_import(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Create (or adopt) a Dataset's import Job once its credentials Secret exists."""
    context: Context = memo.context
    dataset = _load(Dataset, body, patch)
    if is_started(dataset.status):
        return
    delay = context.config.retry_delay(retry)
    missing = _missing_secret(context, dataset)
    if missing:
        _wait(body, patch, dataset.status, "SecretNotFound", missing, delay=delay)
    try:
        job = _ensure_job(context, body, builders.build_import_job(dataset, context.config))
    except ChildConflictError as error:
        _wait(body, patch, dataset.status, "JobConflict", str(error), delay=delay)
    name = builders.import_job_name(str(dataset.metadata.name))
    new = dataset_status(started(dataset.status, dataset.metadata.generation), observe_job(name, job), None, _now())
    _write(patch, dataset.status, new)
    _record_run_spec(body, patch)


@instrumented("Dataset")
def poll_import(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    """Copy the import Job's state and, once it succeeded, the import's result into status."""
    context: Context = memo.context
    dataset = _load(Dataset, body, patch)
    name = builders.import_job_name(str(dataset.metadata.name))
    job = observe_job(name, context.kube.read_job(str(dataset.metadata.namespace), name))
    result, progress, error = None, None, ""
    stored_as = dataset_storage_name(str(dataset.metadata.namespace), str(dataset.metadata.name))
    try:
        if job.phase is JobPhase.SUCCEEDED:
            result = read_import_result(context.storage(), stored_as)
        elif job.phase is JobPhase.RUNNING:
            progress = read_import_progress(context.storage(), stored_as)
    except STORAGE_ERRORS as exc:
        logger.warning("cannot read the state of Job %s: %s", name, exc)
        error = str(exc)
    new = dataset_status(dataset.status, job, result, _now(), error=error, progress=progress)
    new = _with_spec_change(new, dataset, body)
    _write(patch, dataset.status, new)
    _report(body, "Dataset", job, dataset.status, new)
    if job.phase is JobPhase.MISSING:
        kopf.warn(body, reason="JobMissing", message=f"Job {name} is gone; re-creating it")
        _ensure_job(context, body, builders.build_import_job(dataset, context.config))


def read_import_progress(storage: Storage, dataset: str) -> ImportProgress | None:
    """How far a running import is, or None before it wrote that."""
    key = import_progress_key(dataset)
    return ImportProgress.model_validate(storage.read_json(key)) if storage.exists(key) else None


def read_import_result(storage: Storage, dataset: str) -> ImportResult:
    """The newest version of a Dataset and its report, as the import Job left them."""
    version = LatestVersion.model_validate(storage.read_json(latest_key(dataset))).version
    key = report_key(dataset, version)
    return ImportResult(version, ImportReportSummary.model_validate(storage.read_json(key)), storage.uri(key))


@instrumented("Dataset")
def refuse_dataset_change(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """A Dataset's version is what trainings rely on: its spec is fixed once the import started."""
    _refuse(Dataset, body, patch)


# --- TrainingJob --------------------------------------------------------------


def _ready_dataset(
    context: Context, body: kopf.Body, patch: kopf.Patch, training_job: TrainingJob, delay: float
) -> Dataset:
    """The referenced Dataset once it exists and has a version; until then, wait with a reason."""
    name, namespace = training_job.spec.dataset_ref.name, str(training_job.metadata.namespace)
    raw = context.kube.read_resource(Dataset.info.plural, namespace, name)
    if raw is None:
        _wait(
            body, patch, training_job.status, "DatasetNotFound", f"Dataset {name} not found in {namespace}", delay=delay
        )
    try:
        dataset = parse_resource(raw)
    except ResourceError as error:
        _wait(body, patch, training_job.status, "DatasetNotReady", str(error), delay=delay)
    if not isinstance(dataset, Dataset):
        _wait(body, patch, training_job.status, "DatasetNotReady", f"{name} is not a Dataset", delay=delay)
    if not dataset.status.version:
        ready = ready_condition(dataset.status)
        detail = f" ({ready.reason}: {ready.message})" if ready else ""
        message = f"Dataset {name} has no imported version yet{detail}"
        _wait(body, patch, training_job.status, "DatasetNotReady", message, delay=delay)
    return dataset


def _ensure_search_job(
    context: Context, body: kopf.Body, patch: kopf.Patch, training_job: TrainingJob, retry: int
) -> dict[str, Any]:
    """Check every reference of a TrainingJob, then create or adopt its search Job."""
    delay = context.config.retry_delay(retry)
    dataset = _ready_dataset(context, body, patch, training_job, delay)
    missing = _missing_secret(context, dataset)
    if missing:
        _wait(body, patch, training_job.status, "SecretNotFound", missing, delay=delay)
    try:
        if training_job.spec.resources.nodes > 1:
            context.kube.ensure_child(builders.build_search_service(training_job))
        return _ensure_job(context, body, builders.build_training_job(training_job, dataset, context.config))
    except ChildConflictError as error:
        _wait(body, patch, training_job.status, "JobConflict", str(error), delay=delay)


@instrumented("TrainingJob")
def start_search(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Create (or adopt) a TrainingJob's search Job once its Dataset is Ready."""
    context: Context = memo.context
    training_job = _load(TrainingJob, body, patch)
    if is_started(training_job.status):
        return
    job = _ensure_search_job(context, body, patch, training_job, retry)
    name = builders.search_job_name(str(training_job.metadata.name))
    first = started(training_job.status, training_job.metadata.generation)
    budget = training_job.spec.budget_milli_node_hours
    _write(patch, training_job.status, training_status(first, observe_job(name, job), None, budget, _now()))
    _record_run_spec(body, patch)


@instrumented("TrainingJob")
def poll_search(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    """Copy the search Job's state and the trainer's progress.json into status; deploy on success."""
    context: Context = memo.context
    training_job = _load(TrainingJob, body, patch)
    meta, old = training_job.metadata, training_job.status
    name = builders.search_job_name(str(meta.name))
    job = observe_job(name, context.kube.read_job(str(meta.namespace), name))
    progress, error = None, ""
    try:
        progress = read_progress(context.storage(), str(meta.namespace), str(meta.name), str(meta.uid))
    except STORAGE_ERRORS as exc:
        logger.warning("cannot read the progress of Job %s: %s", name, exc)
        error = str(exc)
    new = training_status(old, job, progress, training_job.spec.budget_milli_node_hours, _now(), error=error)
    new = _with_spec_change(new, training_job, body)
    if is_finished(new) and not has_failed(new):
        _deploy(context, body, training_job)
    _write(patch, old, new)
    _report(body, "TrainingJob", job, old, new)
    MILLI_NODE_HOURS.labels(str(meta.namespace)).inc(max(0, new.milli_node_hours_used - old.milli_node_hours_used))
    if job.phase is JobPhase.MISSING and not is_finished(new):
        kopf.warn(body, reason="JobMissing", message=f"Job {name} is gone; re-creating it")
        _ensure_search_job(context, body, patch, training_job, retry=0)


def read_progress(storage: Storage, namespace: str, name: str, uid: str) -> Progress | None:
    """The trainer's progress.json of this run, or None before it wrote one."""
    key = progress_key(run_prefix(namespace, name, uid))
    return Progress.model_validate(storage.read_json(key)) if storage.exists(key) else None


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


@instrumented("TrainingJob")
def refuse_training_change(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """A running or finished search keeps its spec: node-hours already spent are not thrown away."""
    _refuse(TrainingJob, body, patch)


def _deletes_artifacts(spec: kopf.Spec, **_: Any) -> bool:
    """kopf filter (and thereby the finalizer): only runs whose artifacts go with them."""
    return spec.get("artifactPolicy") == ArtifactPolicy.DELETE.value


@instrumented("TrainingJob")
def delete_artifacts(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """``artifactPolicy: Delete``: remove the run's stored artifacts before the resource goes."""
    context: Context = memo.context
    meta = body.metadata
    prefix = run_prefix(str(meta.namespace), str(meta.name), str(meta.uid))
    try:
        context.storage().delete_prefix(prefix)
    except (StorageError, OSError) as error:
        delay = context.config.retry_delay(retry)
        raise kopf.TemporaryError(f"cannot delete {prefix}: {error}", delay=delay) from error
    kopf.info(body, reason="ArtifactsDeleted", message=f"deleted {prefix}")


def forget(body: kopf.Body, **_: Any) -> None:
    """Drop a deleted resource from the Job-phase gauge."""
    JOB_PHASES.observe(str(body.get("kind")), str(body.metadata.namespace), str(body.metadata.name), None)


# --- registration -------------------------------------------------------------


def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, from the same source as the handlers' client (service account or kubeconfig)."""
    return connection_info(load_configuration())


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """All handlers, registered in a fresh registry with the configured poll interval.

    A registry per call, rather than decorators at import, lets the interval come
    from the configuration and lets tests run exactly the operator ``main`` runs.
    """
    # Imported here: the serving handlers build on this module's shared steps.
    from autovision_operator import serving_handlers

    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def connect(memo: kopf.Memo, **_: Any) -> None:
        """Create the API client the handlers share."""
        memo.context = Context(config, Kube.connect())

    kopf.on.login(registry=registry)(login)
    interval = config.poll_interval_seconds
    for resource, start, poll, refuse in (
        (DATASETS, start_import, poll_import, refuse_dataset_change),
        (TRAINING_JOBS, start_search, poll_search, refuse_training_change),
    ):
        kopf.on.create(*resource, registry=registry)(start)
        kopf.timer(*resource, interval=interval, when=_needs_polling, registry=registry)(poll)
        kopf.on.update(*resource, field="spec", registry=registry)(refuse)
        kopf.on.delete(*resource, optional=True, registry=registry)(forget)
    kopf.on.delete(*TRAINING_JOBS, when=_deletes_artifacts, retries=10, registry=registry)(delete_artifacts)
    serving_handlers.register(registry, interval)
    return registry
