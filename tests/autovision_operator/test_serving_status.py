"""The pure mapping from the Triton Deployment's rollout to ModelDeployment status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from autovision.resources import (
    Endpoints,
    ModelDeployment,
    ModelDeploymentStatus,
    RolloutPhase,
    RolloutStatus,
    ServedModelRecord,
    find_condition,
    parse_resource,
)
from autovision.serving.traffic import Backend, ModelStats, Routes, Shadow, ShadowStats, TrafficStats
from autovision_operator.serving_builders import MODEL_VERSION_ANNOTATION, serving_endpoints
from autovision_operator.serving_status import (
    ROLLOUT,
    Rollout,
    label_selector,
    observe_deployment,
    rollout_condition,
    serving_status,
    traffic_status,
    updated_history,
)
from autovision_operator.status import status_patch

T0 = dt.datetime(2026, 11, 23, 12, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)
ENDPOINTS = Endpoints(http="flowers.ml.svc:8000", grpc="flowers.ml.svc:8001", predict="http://flowers.ml.svc:8080/p")
SELECTOR = {"app.kubernetes.io/name": "autovision", "app.kubernetes.io/component": "serving"}


def deployment(version: str = "run-a", generation: int = 1, desired: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "flowers", "generation": generation},
        "spec": {
            "replicas": desired,
            "selector": {"matchLabels": SELECTOR},
            "template": {"metadata": {"annotations": {MODEL_VERSION_ANNOTATION: version}}},
        },
        "status": status,
    }


def rolled_out(version: str = "run-a", generation: int = 1, desired: int = 2) -> dict[str, Any]:
    """What the Deployment controller reports once every replica runs the template and is ready."""
    counts = {"replicas": desired, "updatedReplicas": desired, "readyReplicas": desired}
    return deployment(version, generation, desired, observedGeneration=generation, **counts)


def status_of(obj: dict[str, Any], before: ModelDeploymentStatus | None = None, now: dt.datetime = T0) -> Any:
    return serving_status(before or ModelDeploymentStatus(), observe_deployment(obj), ENDPOINTS, now)


def condition(status: ModelDeploymentStatus, type: str) -> tuple[str, str]:
    found = find_condition(status.conditions, type)
    assert found is not None, f"no {type} condition in {status.conditions}"
    return found.status.value, found.reason


def test_observe_a_new_deployment() -> None:
    rollout = observe_deployment(deployment())
    assert rollout == Rollout(
        desired=2,
        current=0,
        updated=0,
        ready=0,
        observed=False,
        version="run-a",
        selector="app.kubernetes.io/component=serving,app.kubernetes.io/name=autovision",
    )
    assert not rollout.complete


def test_label_selector_is_the_scale_subresource_form() -> None:
    assert label_selector({"b": "2", "a": "1"}) == "a=1,b=2"


def test_no_deployment_is_not_ready() -> None:
    status = serving_status(ModelDeploymentStatus(), None, ENDPOINTS, T0)
    assert condition(status, "Ready") == ("False", "DeploymentMissing")
    assert (status.nodes, status.ready_nodes, status.endpoints) == (0, 0, None)


def test_a_first_rollout_is_not_ready_until_complete() -> None:
    status = status_of(deployment(observedGeneration=1, replicas=2, updatedReplicas=2, readyReplicas=1))
    assert condition(status, "Ready") == ("False", "RollingOut")
    assert condition(status, "Progressing") == ("True", "RollingOut")
    assert status.model_version is None
    assert (status.nodes, status.ready_nodes) == (2, 1)
    assert status.endpoints == ENDPOINTS
    assert status.selector == "app.kubernetes.io/component=serving,app.kubernetes.io/name=autovision"


def test_a_complete_rollout_serves_its_version() -> None:
    status = status_of(rolled_out())
    assert condition(status, "Ready") == ("True", "Available")
    assert condition(status, "Progressing") == ("False", "RolloutComplete")
    assert status.model_version == "run-a"
    assert (status.nodes, status.ready_nodes) == (2, 2)


def test_a_stale_observation_is_not_complete() -> None:
    stale = rolled_out(generation=1) | {"metadata": {"name": "flowers", "generation": 2}}
    assert not observe_deployment(stale).complete


def test_a_new_model_rolls_out_while_the_old_one_serves() -> None:
    serving = status_of(rolled_out("run-a"))
    # The template now names run-b; one surged pod runs it, the two old ones still serve run-a.
    rolling = deployment("run-b", generation=2, observedGeneration=2, replicas=3, updatedReplicas=1, readyReplicas=2)
    status = status_of(rolling, serving, T1)
    assert status.model_version == "run-a"
    assert condition(status, "Ready") == ("False", "RollingOut")
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None
    assert "still serving run-a" in ready.message
    done = status_of(rolled_out("run-b", generation=2), status, T1)
    assert done.model_version == "run-b"
    assert condition(done, "Ready") == ("True", "Available")


def test_scaling_out_keeps_serving() -> None:
    serving = status_of(rolled_out("run-a", desired=2))
    scaling = deployment("run-a", 2, desired=4, observedGeneration=2, replicas=4, updatedReplicas=4, readyReplicas=2)
    status = status_of(scaling, serving, T1)
    assert condition(status, "Ready") == ("True", "Available")
    assert condition(status, "Progressing") == ("True", "Scaling")
    assert (status.nodes, status.ready_nodes, status.model_version) == (4, 2, "run-a")


def test_no_ready_node_is_unavailable() -> None:
    serving = status_of(rolled_out("run-a"))
    crashed = deployment("run-a", observedGeneration=1, replicas=2, updatedReplicas=2, readyReplicas=0)
    status = status_of(crashed, serving, T1)
    assert condition(status, "Ready") == ("False", "Unavailable")


def test_a_stuck_rollout_says_so() -> None:
    serving = status_of(rolled_out("run-a"))
    stuck = deployment(
        "run-b",
        generation=2,
        observedGeneration=2,
        replicas=3,
        updatedReplicas=1,
        readyReplicas=2,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "flowers-7d9" has timed out progressing.',
            }
        ],
    )
    status = status_of(stuck, serving, T1)
    assert condition(status, "Ready") == ("False", "ProgressDeadlineExceeded")
    assert condition(status, "Progressing") == ("False", "ProgressDeadlineExceeded")
    assert status.model_version == "run-a"


@pytest.mark.parametrize("obj", [deployment(), rolled_out()])
def test_the_same_observation_changes_nothing(obj: dict[str, Any]) -> None:
    first = status_of(obj)
    again = status_of(obj, first, T1)
    assert status_patch(first, again) == {}


def test_status_lists_googles_endpoints_to_copy() -> None:
    md = parse_resource(
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "flowers", "namespace": "ml"},
            "spec": {"modelRef": {"trainingJob": "run"}},
        }
    )
    assert isinstance(md, ModelDeployment)
    served = deployment(desired=1, observedGeneration=1, replicas=1, updatedReplicas=1, readyReplicas=1)
    rollout = observe_deployment(served)
    status = serving_status(ModelDeploymentStatus(), rollout, serving_endpoints(md, "run"), T0)
    written = status.model_dump(mode="json", by_alias=True, exclude_none=True)["endpoints"]
    assert written == {
        "http": "flowers-run.ml.svc:8000",
        "grpc": "flowers-run.ml.svc:8001",
        "predict": "http://flowers.ml.svc:8080/v1/models/flowers:predict",
        "googleRest": "http://flowers.ml.svc:8080",
        "googleGrpc": "flowers.ml.svc:8081",
        "automlModel": "projects/ml/locations/cluster/models/flowers",
        "vertexEndpoint": "projects/ml/locations/cluster/endpoints/flowers",
    }


# --- traffic, history, rollout -----------------------------------------------------------


def table(split: dict[str, int], shadow: str | None = None) -> Routes:
    backends = tuple(Backend(run=run, triton_url=f"{run}:8000", percent=percent) for run, percent in split.items())
    return Routes(backends=backends, shadow=Shadow(run=shadow, triton_url=f"{shadow}:8000") if shadow else None)


def test_traffic_status_shows_each_models_share_counts_and_latency() -> None:
    counted = ModelStats()
    for latency in [3.0] * 98 + [40.0, 40.0]:
        counted.observe(latency, ok=latency < 10)
    stats = TrafficStats(models={"run-a": counted}, shadow=ShadowStats(run="run-c", compared=10, agreed=9, errors=1))
    models, shadow = traffic_status(table({"run-a": 90, "run-b": 10}, "run-c"), stats)
    first, second = models
    assert (first.training_job, first.percent, first.requests, first.errors) == ("run-a", 90, 100, 2)
    assert (first.p50_ms, first.p99_ms) == (3, 50)
    assert (second.training_job, second.requests, second.p99_ms) == ("run-b", 0, None)
    assert shadow is not None
    assert (shadow.training_job, shadow.compared, shadow.agreed, shadow.agreement) == ("run-c", 10, 9, 0.9)
    assert traffic_status(table({"run-a": 100}), stats)[1] is None


def record(run: str) -> ServedModelRecord:
    return ServedModelRecord(training_job=run, dataset_version="sha256-feed", evaluation="accuracy=0.9", since=T0)


def rollout(phase: RolloutPhase, message: str = "") -> RolloutStatus:
    return RolloutStatus(candidate="run-b", stable="run-a", phase=phase, step_since=T0, started=T0, message=message)


def test_history_opens_a_record_when_a_model_serves_and_closes_it_with_why() -> None:
    records = {run: record(run) for run in ("run-a", "run-b")}
    history = updated_history([], table({"run-a": 100}), records, None, T0)
    assert [(item.training_job, item.since, item.until) for item in history] == [("run-a", T0, None)]
    assert history[0].dataset_version == "sha256-feed"
    canary = updated_history(history, table({"run-a": 90, "run-b": 10}), records, None, T1)
    assert [(item.training_job, item.until) for item in canary] == [("run-b", None), ("run-a", None)]
    promoted = updated_history(canary, table({"run-b": 100}), records, rollout(RolloutPhase.PROMOTED), T1)
    assert [(item.training_job, item.until, item.ended) for item in promoted] == [
        ("run-b", None, None),
        ("run-a", T1, "replaced by run-b in a rollout"),
    ]
    back = updated_history(canary, table({"run-a": 100}), records, rollout(RolloutPhase.ROLLED_BACK, "p99"), T1)
    assert back[0].ended == "rolled back to run-a: p99"
    assert updated_history(back, table({"run-a": 100}), records, None, T1) == back  # nothing new


def test_history_keeps_the_last_ten() -> None:
    history: list[ServedModelRecord] = []
    for index in range(12):
        run = f"run-{index}"
        history = updated_history(history, table({run: 100}), {run: record(run)}, None, T0)
    assert len(history) == 10
    assert history[0].training_job == "run-11"


def test_the_rollout_condition_is_true_while_under_way() -> None:
    active = rollout_condition(rollout(RolloutPhase.PROGRESSING, "run-b answered 3 of 100 requests"))
    assert (active.type, active.status, active.reason) == (ROLLOUT, "True", "Progressing")
    assert "run-b at 0 %" in active.message
    ended = rollout_condition(rollout(RolloutPhase.ROLLED_BACK))
    assert (ended.status, ended.reason) == ("False", "RolledBack")
