"""Pure status mapping of serving: what the Deployments and the gateways say, as ModelDeployment status.

The handlers read the primary model's Triton Deployment and hand it here.
``status.modelVersion`` is the version its pods run, taken from the pod template
once its rollout is complete. The gateways' merged counts become ``status.traffic``
and ``status.shadow``; the routing table the gateway has becomes ``status.history``:
a run enters it when it starts answering requests and leaves it, with the reason,
when it stops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from autovision.resources import (
    READY,
    ConditionStatus,
    Endpoints,
    ModelDeploymentStatus,
    ModelTraffic,
    RolloutPhase,
    RolloutStatus,
    ServedModelRecord,
    ShadowTraffic,
)
from autovision.serving.traffic import Routes, TrafficStats
from autovision_operator.serving_builders import MODEL_VERSION_ANNOTATION
from autovision_operator.status import Cond, with_conditions

PROGRESSING: Final = "Progressing"
AVAILABLE: Final = "Available"
ROLLING_OUT: Final = "RollingOut"
SCALING: Final = "Scaling"
UNAVAILABLE: Final = "Unavailable"
ROLLOUT_COMPLETE: Final = "RolloutComplete"
DEPLOYMENT_MISSING: Final = "DeploymentMissing"
PROGRESS_DEADLINE_EXCEEDED: Final = "ProgressDeadlineExceeded"
ROLLOUT: Final = "Rollout"
"""The condition of ``spec.rollout``: True while one is under way, its reason the phase."""
HISTORY_LENGTH: Final = 10


@dataclass(frozen=True)
class Rollout:
    """A Deployment's replicas and rollout state, as its controller last reported them."""

    desired: int
    current: int
    updated: int
    ready: int
    observed: bool
    version: str | None
    selector: str | None
    stalled: str | None = None

    @property
    def complete(self) -> bool:
        """Whether every desired pod runs the current template and is ready, as ``kubectl rollout status`` has it."""
        return self.observed and self.updated == self.current == self.ready == self.desired

    @property
    def replacing(self) -> bool:
        """Whether pods of an older template are still running."""
        return self.updated != self.current


def label_selector(match_labels: Mapping[str, str]) -> str:
    """The string form of an equality-based label selector, as the scale subresource reports it."""
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def observe_deployment(deployment: Mapping[str, Any]) -> Rollout:
    """Read an apps/v1 Deployment into a Rollout."""
    metadata, spec, status = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
    template_metadata = (spec.get("template") or {}).get("metadata") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels")
    stalled = next(
        (
            condition.get("message") or PROGRESS_DEADLINE_EXCEEDED
            for condition in status.get("conditions") or []
            if condition.get("type") == PROGRESSING and condition.get("reason") == PROGRESS_DEADLINE_EXCEEDED
        ),
        None,
    )
    return Rollout(
        desired=int(spec.get("replicas", 1)),
        current=int(status.get("replicas", 0)),
        updated=int(status.get("updatedReplicas", 0)),
        ready=int(status.get("readyReplicas", 0)),
        observed=int(status.get("observedGeneration", 0)) >= int(metadata.get("generation", 0)),
        version=(template_metadata.get("annotations") or {}).get(MODEL_VERSION_ANNOTATION),
        selector=label_selector(match_labels) if match_labels else None,
        stalled=stalled,
    )


def serving_status(
    status: ModelDeploymentStatus, rollout: Rollout | None, endpoints: Endpoints, now: datetime
) -> ModelDeploymentStatus:
    """A ModelDeployment's status from its Deployment's rollout (None when there is no Deployment).

    Ready means the desired model answers: True once its rollout completed, and
    while it is only being scaled with at least one ready node. A new model (or
    a new configuration) is RollingOut until every node runs it.
    """
    if rollout is None:
        message = "the Triton Deployment does not exist (yet)"
        updated = status.model_copy(update={"nodes": 0, "ready_nodes": 0})
        return with_conditions(updated, now, Cond(READY, ConditionStatus.FALSE, DEPLOYMENT_MISSING, message))
    update: dict[str, Any] = {
        "nodes": rollout.current,
        "ready_nodes": rollout.ready,
        "selector": rollout.selector,
        "endpoints": endpoints,
    }
    if rollout.complete:
        update["model_version"] = rollout.version
    observed = status.model_copy(update=update)
    return with_conditions(observed, now, *_rollout_conditions(rollout, observed.model_version))


def _rollout_conditions(rollout: Rollout, served: str | None) -> tuple[Cond, Cond]:
    """Progressing and Ready of a rollout, given the version the pods served when it last completed."""
    counts = f"{rollout.ready} of {rollout.desired} node(s) ready"
    if rollout.complete:
        message = f"serving {served} on {rollout.ready} node(s)"
        return (
            Cond(PROGRESSING, ConditionStatus.FALSE, ROLLOUT_COMPLETE, message),
            Cond(READY, ConditionStatus.TRUE, AVAILABLE, message),
        )
    if rollout.stalled is not None:
        message = f"the rollout of {rollout.version} is stuck: {rollout.stalled}" + _still(served, rollout)
        return (
            Cond(PROGRESSING, ConditionStatus.FALSE, PROGRESS_DEADLINE_EXCEEDED, message),
            Cond(READY, ConditionStatus.FALSE, PROGRESS_DEADLINE_EXCEEDED, message),
        )
    if not rollout.replacing and rollout.version == served:
        scaling = Cond(PROGRESSING, ConditionStatus.TRUE, SCALING, f"scaling {served}: {counts}")
        if rollout.ready:
            return scaling, Cond(READY, ConditionStatus.TRUE, AVAILABLE, f"serving {served}: {counts}")
        return scaling, Cond(READY, ConditionStatus.FALSE, UNAVAILABLE, f"no node serving {served} is ready: {counts}")
    message = f"rolling out {rollout.version}: {rollout.updated} of {rollout.desired} node(s) updated, {counts}"
    message += _still(served, rollout)
    return (
        Cond(PROGRESSING, ConditionStatus.TRUE, ROLLING_OUT, message),
        Cond(READY, ConditionStatus.FALSE, ROLLING_OUT, message),
    )


def _still(served: str | None, rollout: Rollout) -> str:
    """What the old pods keep serving meanwhile, when that is another version."""
    return f"; still serving {served}" if served and served != rollout.version else ""


def traffic_status(table: Routes, stats: TrafficStats) -> tuple[list[ModelTraffic], ShadowTraffic | None]:
    """Per model of the gateway's table: its percent and the gateways' counts; and the shadow's agreement."""
    models = []
    for backend in table.backends:
        counted = stats.models.get(backend.run)
        models.append(
            ModelTraffic(
                training_job=backend.run,
                percent=backend.percent,
                requests=counted.requests if counted else 0,
                errors=counted.errors if counted else 0,
                p50_ms=counted.latency_quantile_ms(0.5) if counted else None,
                p99_ms=counted.latency_quantile_ms(0.99) if counted else None,
            )
        )
    shadow = stats.shadow if table.shadow and stats.shadow and stats.shadow.run == table.shadow.run else None
    if table.shadow is None:
        return models, None
    return models, ShadowTraffic(
        training_job=table.shadow.run,
        compared=shadow.compared if shadow else 0,
        agreed=shadow.agreed if shadow else 0,
        errors=shadow.errors if shadow else 0,
        agreement=shadow.agreement if shadow else None,
    )


def updated_history(
    history: Sequence[ServedModelRecord],
    table: Routes,
    records: Mapping[str, ServedModelRecord],
    rollout: RolloutStatus | None,
    now: datetime,
) -> list[ServedModelRecord]:
    """The history once ``table`` routes: runs newly answering requests open a record, runs gone close theirs.

    ``records`` holds a fresh record (run, dataset version, evaluation) of every run
    that may open one. The newest come first; closed records beyond HISTORY_LENGTH go.
    """
    serving = {backend.run for backend in table.backends if backend.percent > 0}
    now = now.replace(microsecond=0)
    updated = [
        entry.model_copy(update={"until": now, "ended": _why_ended(entry.training_job, rollout)})
        if entry.until is None and entry.training_job not in serving
        else entry
        for entry in history
    ]
    open_runs = {entry.training_job for entry in updated if entry.until is None}
    opened = [records[run].model_copy(update={"since": now}) for run in sorted(serving - open_runs) if run in records]
    return [*opened, *updated][:HISTORY_LENGTH]


def _why_ended(run: str, rollout: RolloutStatus | None) -> str:
    """Why a run stopped answering requests, as the rollout (if any) explains it."""
    if rollout is not None and run == rollout.stable:
        return f"replaced by {rollout.candidate} in a rollout"
    if (
        rollout is not None
        and run == rollout.candidate
        and rollout.phase in {RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED}
    ):
        return f"rolled back to {rollout.stable}: {rollout.message}"
    return "no longer in the spec's traffic"


def rollout_condition(rollout: RolloutStatus) -> Cond:
    """The Rollout condition: True while under way (reason Progressing or Paused), False once it ended."""
    active = rollout.phase in {RolloutPhase.PROGRESSING, RolloutPhase.PAUSED}
    status = ConditionStatus.TRUE if active else ConditionStatus.FALSE
    return Cond(ROLLOUT, status, rollout.phase.value, f"{rollout.candidate} at {rollout.percent} %: {rollout.message}")
