"""Pure status mapping of serving: what the Triton Deployment says, as ModelDeployment status.

The handlers read the Deployment and hand it here. ``status.modelVersion`` is the
version the serving pods run, taken from the pod template once a rollout is
complete, so during a rollout it still names the model the old pods serve.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from autovision.resources import READY, ConditionStatus, Endpoints, ModelDeploymentStatus
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
