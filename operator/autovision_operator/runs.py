"""What the two resources that run a Job, Datasets and TrainingJobs, share.

Each is a thin layer of I/O around the pure builders (``builders``) and the
pure status mapping (``status``):

* on create, check the references, then create or adopt the child Job and
  record the generation it was built from (``status.observedGeneration``);
* a timer reads the Job and the trainer's files in storage and patches status
  while a run is in flight; it stops once the run finished;
* a spec change after the run started gets a SpecChangeRefused condition.

Every step is safe to repeat: children have deterministic names, an existing
child is adopted, and status is recomputed from what exists.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import kopf
from pydantic import ValidationError

from autovision.resources import ConditionStatus, Dataset, ResourceStatus, TrainingJob, find_condition
from autovision_operator import builders
from autovision_operator.metrics import JOB_PHASES, RUNS_FINISHED
from autovision_operator.reconcile import Context, Handler, NotReadyError, load, now, write
from autovision_operator.status import (
    RUN_SPEC_ANNOTATION,
    SPEC_CHANGE_REFUSED,
    JobObservation,
    has_failed,
    is_finished,
    needs_polling,
    ready_condition,
    run_spec,
    run_spec_annotation,
    spec_change,
)

ResourceT = TypeVar("ResourceT", Dataset, TrainingJob)
StatusT = TypeVar("StatusT", bound=ResourceStatus)
# A trainer's file that is there but says something unexpected: reported in
# status (ResultMissing) rather than waited for as unreachable storage.
UNREADABLE: Final = (ValidationError, KeyError)


def register(
    registry: kopf.OperatorRegistry,
    resource: tuple[str, str, str],
    interval: float,
    *,
    start: Handler,
    poll: Handler,
    refuse: Handler,
) -> None:
    """Register a run's handlers: start on create, poll while in flight, refuse spec changes, forget on delete."""
    kopf.on.create(*resource, registry=registry)(start)
    kopf.timer(*resource, interval=interval, when=_needs_polling, registry=registry)(poll)
    kopf.on.update(*resource, field="spec", registry=registry)(refuse)
    kopf.on.delete(*resource, optional=True, registry=registry)(forget)


def ensure_job(context: Context, body: kopf.Body, job: dict[str, Any]) -> dict[str, Any]:
    """Create or adopt a child Job, telling the user when one was created."""
    existing, created = context.kube.ensure_job(job)
    if created:
        kopf.info(body, reason="JobCreated", message=f"created Job {job['metadata']['name']}")
    return existing


def require_secret(context: Context, dataset: Dataset) -> None:
    """NotReadyError SecretNotFound until the Secret with a Dataset's storage credentials exists (if it names one)."""
    secret = builders.credentials_secret(dataset, context.config)
    namespace = str(dataset.metadata.namespace)
    if secret is not None and not context.kube.secret_exists(namespace, secret):
        message = f"Secret {secret} (storage credentials of Dataset {dataset.metadata.name}) not found in {namespace}"
        raise NotReadyError("SecretNotFound", message)


def report(body: kopf.Body, kind: str, job: JobObservation, old: ResourceStatus, new: ResourceStatus) -> None:
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


def refuse(model: type[ResourceT], body: kopf.Body, patch: kopf.Patch) -> None:
    """On a spec change: keep the run, and say so in a SpecChangeRefused condition and an event."""
    resource = load(model, body, patch)
    new = with_spec_change(resource.status, resource, body)
    write(patch, resource.status, new)
    before = find_condition(resource.status.conditions, SPEC_CHANGE_REFUSED)
    after = find_condition(new.conditions, SPEC_CHANGE_REFUSED)
    if after is not None and after.status == ConditionStatus.TRUE and after != before:
        kopf.warn(body, reason=SPEC_CHANGE_REFUSED, message=after.message)


def with_spec_change(status: StatusT, resource: Dataset | TrainingJob, body: kopf.Body) -> StatusT:
    """``status`` with SpecChangeRefused derived from the resource's current and recorded spec."""
    started_from = run_spec(resource.metadata.annotations)
    return spec_change(status, started_from, body.get("spec") or {}, type(resource).__name__, now())


def record_run_spec(body: kopf.Body, patch: kopf.Patch) -> None:
    """Keep the spec a run starts from on the resource, to tell later changes apart."""
    patch.metadata.annotations[RUN_SPEC_ANNOTATION] = run_spec_annotation(body.get("spec") or {})


def _needs_polling(status: kopf.Status, **_: Any) -> bool:
    """kopf filter: poll only resources whose run started and has not finished."""
    return needs_polling(ResourceStatus.model_validate(dict(status)))


def forget(body: kopf.Body, **_: Any) -> None:
    """Drop a deleted resource from the Job-phase gauge."""
    JOB_PHASES.observe(str(body.get("kind")), str(body.metadata.namespace), str(body.metadata.name), None)
