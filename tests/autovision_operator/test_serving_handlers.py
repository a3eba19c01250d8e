"""ModelDeployments as the operator serves them: kopf's KopfRunner against KMock.

The scenarios play the Deployment controller (patching Deployment status), the
autoscaler (patching Deployment replicas) and the gateway (a Running pod of the
gateway's current template, whose ``traffic.STATS_PATH`` KMock answers through the
pod proxy with the counts the scenario sets). KMock has no scale subresource, so
``kubectl scale modeldeployment/flowers --replicas=3`` is played by patching
``spec.nodes``, the field the CRD's scale subresource maps ``replicas`` to; and no
garbage collector, so deletion checks the owner references it would follow.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from autovision.contract import env
from autovision.resources import API_VERSION
from autovision_operator.config import OperatorConfig, kopf_settings
from tests.support.kube import (
    NAMESPACE,
    ApiServer,
    Cluster,
    eventually,
    gone,
    has_events,
    ready,
    resource_where,
    running_operator,
)

MODEL_DEPLOYMENTS = "modeldeployments"
NAME = "flowers"
ENDPOINT = "http://seaweedfs.storage:8333"
SELECTOR = (
    "app.kubernetes.io/component=serving,app.kubernetes.io/instance=flowers,app.kubernetes.io/name=autovision,"
    "autovision.dev/model=run-a"
)
SINCE = "2026-11-23T12:00:00Z"
DATASET = {
    "apiVersion": API_VERSION,
    "kind": "Dataset",
    "metadata": {"name": "flowers"},
    "spec": {"source": "s3://autovision/flowers.zip", "storageSecretRef": {"name": "s3-credentials"}},
    "status": {
        "observedGeneration": 1,
        "version": "sha256-feed",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Imported", "lastTransitionTime": SINCE}],
    },
}
MODEL_DEPLOYMENT = {
    "apiVersion": API_VERSION,
    "kind": "ModelDeployment",
    "metadata": {"name": NAME},
    "spec": {"modelRef": {"trainingJob": "missing-run"}, "nodes": 2},
}


def training_job(name: str, status: dict[str, Any]) -> dict[str, Any]:
    """A TrainingJob whose run already ended (the operator only reads it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 1000},
        "status": {"observedGeneration": 1, **status},
    }


def succeeded(name: str) -> dict[str, Any]:
    ready_condition = {"type": "Ready", "status": "True", "reason": "Succeeded", "lastTransitionTime": SINCE}
    artifacts = {"tritonRepository": f"s3://autovision/runs/{NAMESPACE}/{name}/triton"}
    return training_job(name, {"conditions": [ready_condition], "artifacts": artifacts})


FAILED_RUN = training_job(
    "failed-run",
    {
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": SINCE},
            {
                "type": "Ready",
                "status": "False",
                "reason": "BackoffLimitExceeded",
                "message": "the search Job failed-run-search failed",
                "lastTransitionTime": SINCE,
            },
        ]
    },
)


@pytest.fixture
def serving_config(operator_config: OperatorConfig) -> OperatorConfig:
    return operator_config.model_copy(update={"s3_endpoint_url": ENDPOINT})


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_model_deployment_create_scale_update_delete(cluster: Cluster, serving_config: OperatorConfig) -> None:
    await cluster.create_secret("s3-credentials")
    await cluster.apply("datasets", DATASET)
    for run in (succeeded("run-a"), succeeded("run-b"), FAILED_RUN):
        await cluster.apply("trainingjobs", run)
    async with running_operator(serving_config):
        await waits_for_a_servable_model(cluster)
        owner_uid = await serves_the_training_job(cluster, "run-a")
        await scales_with_nodes(cluster)
    # The operator restarts and picks up where it was, creating nothing twice.
    async with running_operator(serving_config):
        await autoscaling_owns_the_replicas(cluster)
        await a_new_model_rolls_out(cluster, "run-a", "run-b")
        await nodes_own_the_replicas_again(cluster)
        expected = {"TrainingJobNotFound", "ModelNotReady", "DeploymentCreated", "ServiceCreated", "ModelServed"}
        expected |= {"PodDisruptionBudgetCreated", "HorizontalPodAutoscalerCreated", "DeploymentUpdated"}
        expected |= {"AutoscalerDeleted", "ModelRemoved"}
        await eventually(lambda: has_events(cluster, expected), f"events {expected}")
        await children_go_with_the_model_deployment(cluster, owner_uid)


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(60)
async def test_token_checks_wait_for_the_serving_account(cluster: Cluster, serving_config: OperatorConfig) -> None:
    """spec.auth.requireToken: nothing is deployed until the chart's serving ServiceAccount exists, then runs as it."""
    await cluster.create_secret("s3-credentials")
    await cluster.apply("datasets", DATASET)
    await cluster.apply("trainingjobs", succeeded("run-a"))
    spec = {"modelRef": {"trainingJob": "run-a"}, "auth": {"requireToken": True}}
    async with running_operator(serving_config):
        await cluster.apply(MODEL_DEPLOYMENTS, {**MODEL_DEPLOYMENT, "spec": spec})
        waiting = await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, ready("ServiceAccountNotFound", "False"))
        assert "servingAuth.namespaces" in _ready_message(waiting)
        assert not await _exists(cluster.deployment(NAME))
        await cluster.create_service_account(serving_config.serving_service_account)
        gateway = await eventually(lambda: cluster.deployment(NAME), "the gateway Deployment")
        pod = gateway["spec"]["template"]["spec"]
        assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("autovision-serving", True)
        policy = await eventually(lambda: cluster.network_policy(NAME), "the NetworkPolicy")
        assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "serving"


async def waits_for_a_servable_model(cluster: Cluster) -> None:
    """A missing or failed TrainingJob: Ready=False with the reason, and nothing deployed."""
    await cluster.apply(MODEL_DEPLOYMENTS, MODEL_DEPLOYMENT)
    await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, ready("TrainingJobNotFound", "False"))
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": "failed-run"}})
    waiting = await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, ready("ModelNotReady", "False"))
    assert "BackoffLimitExceeded" in _ready_message(waiting)
    assert not await _exists(cluster.deployment(NAME))


async def serves_the_training_job(cluster: Cluster, run: str) -> str:
    """A Ready TrainingJob's repository is served: owned children, then Ready with endpoints once rolled out."""
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": run}})
    triton = await eventually(lambda: cluster.deployment(f"{NAME}-{run}"), "the Triton Deployment")
    gateway = await eventually(lambda: cluster.deployment(NAME), "the gateway Deployment")
    assert [(b["run"], b["percent"]) for b in routes_of(gateway)["backends"]] == [(run, 100)]
    md = await cluster.resource(MODEL_DEPLOYMENTS, NAME)
    uid = md["metadata"]["uid"]
    assert triton["spec"]["replicas"] == 2
    assert triton["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    triton_container = triton["spec"]["template"]["spec"]["containers"][0]
    assert f"--model-repository=s3://seaweedfs.storage:8333/autovision/runs/ml/{run}/triton" in triton_container["args"]
    assert triton_container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]  # the Dataset's credentials
    service = await eventually(lambda: cluster.service(f"{NAME}-{run}"), "the model's Service")
    budget = await eventually(lambda: cluster.pod_disruption_budget(f"{NAME}-{run}"), "the PodDisruptionBudget")
    gateway_service = await eventually(lambda: cluster.service(NAME), "the gateway's Service")
    assert {port["name"] for port in gateway_service["spec"]["ports"]} == {"predict", "google-grpc"}
    for child in (triton, service, budget, gateway, gateway_service):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", uid, True)
    assert not await _exists(cluster.autoscaler(f"{NAME}-{run}"))

    served = await _serving(cluster, ready("Available", "True"))
    status = served["status"]
    assert status["modelVersion"] == await _version(cluster, run)
    assert (status["nodes"], status["readyNodes"], status["selector"]) == (2, 2, SELECTOR)
    assert status["endpoints"] == {
        "http": f"flowers-{run}.ml.svc:8000",
        "grpc": f"flowers-{run}.ml.svc:8001",
        "predict": "http://flowers.ml.svc:8080/v1/models/flowers:predict",
        "googleRest": "http://flowers.ml.svc:8080",
        "googleGrpc": "flowers.ml.svc:8081",
        "automlModel": "projects/ml/locations/cluster/models/flowers",
        "vertexEndpoint": "projects/ml/locations/cluster/endpoints/flowers",
    }
    assert status["observedGeneration"] == served["metadata"]["generation"]
    assert [(entry["trainingJob"], entry["datasetVersion"]) for entry in status["history"]] == [(run, "sha256-feed")]
    return str(uid)


async def scales_with_nodes(cluster: Cluster) -> None:
    """``kubectl scale`` (spec.nodes) sets the Deployment's replicas."""
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"nodes": 3})
    await _replicas(cluster, "flowers-run-a", 3)
    assert (await cluster.deployment(NAME))["spec"]["replicas"] == 2  # the gateway scales on its own
    await _serving(cluster, lambda md: md["status"]["readyNodes"] == 3)


async def autoscaling_owns_the_replicas(cluster: Cluster) -> None:
    """With autoscaling, an owned HPA appears with nodes as its floor, and the replicas are left to it."""
    autoscaling = {"minNodes": 1, "maxNodes": 6, "target": "inflight"}
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"autoscaling": autoscaling})
    autoscaler = await eventually(lambda: cluster.autoscaler("flowers-run-a"), "the HorizontalPodAutoscaler")
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (3, 6)
    assert autoscaler["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
    assert autoscaler["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"

    await cluster.patch_deployment("flowers-run-a", {"spec": {"replicas": 5}})  # the autoscaler scales out
    await _serving(cluster, lambda md: (md["status"]["nodes"], md["status"]["readyNodes"]) == (5, 5))
    await asyncio.sleep(1.0)  # several reconciliations
    assert (await cluster.deployment("flowers-run-a"))["spec"]["replicas"] == 5


async def a_new_model_rolls_out(cluster: Cluster, old: str, new: str) -> None:
    """Another TrainingJob's model gets its own Triton; the gateway switches once it is ready, then the old goes."""
    old_version, new_version = await _version(cluster, old), await _version(cluster, new)
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": new}})
    triton = await eventually(lambda: cluster.deployment(f"{NAME}-{new}"), "the new model's Deployment")
    assert (
        f"--model-repository=s3://seaweedfs.storage:8333/autovision/runs/ml/{new}/triton"
        in (triton["spec"]["template"]["spec"]["containers"][0]["args"])
    )
    await asyncio.sleep(1.0)  # several reconciliations: the new model is not ready, the gateway stays
    assert [b["run"] for b in routes_of(await cluster.deployment(NAME))["backends"]] == [old]
    assert (await cluster.resource(MODEL_DEPLOYMENTS, NAME))["status"]["modelVersion"] == old_version
    served = await _serving(cluster, lambda md: md["status"].get("modelVersion") == new_version)
    assert ready("Available", "True")(served)
    await _until_gone(cluster, f"{NAME}-{old}")
    for read in (cluster.service, cluster.pod_disruption_budget, cluster.autoscaler):
        assert not await _exists(read(f"{NAME}-{old}"))
    history = (await cluster.resource(MODEL_DEPLOYMENTS, NAME))["status"]["history"]
    assert [(entry["trainingJob"], "until" in entry) for entry in history] == [(new, False), (old, True)]


async def nodes_own_the_replicas_again(cluster: Cluster) -> None:
    """Without autoscaling the HPA goes and spec.nodes sets the replicas again."""
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"autoscaling": None})
    await eventually(lambda: _missing(cluster.autoscaler("flowers-run-b")), "the HorizontalPodAutoscaler to go")
    await _replicas(cluster, "flowers-run-b", 3)


async def children_go_with_the_model_deployment(cluster: Cluster, owner_uid: str) -> None:
    """Deleting the ModelDeployment releases it (kopf's finalizer); its children carry owner references for the GC."""
    await cluster.delete(MODEL_DEPLOYMENTS, NAME)
    await eventually(lambda: gone(cluster, MODEL_DEPLOYMENTS, NAME), "the ModelDeployment to be deleted")
    for read, name in (
        (cluster.deployment, "flowers-run-b"),
        (cluster.service, "flowers-run-b"),
        (cluster.pod_disruption_budget, "flowers-run-b"),
        (cluster.deployment, NAME),
    ):
        (owner,) = (await read(name))["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["blockOwnerDeletion"]) == (owner_uid, True)


def routes_of(gateway: dict[str, Any]) -> dict[str, Any]:
    """The routing table in a gateway Deployment's environment."""
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    settings = {item["name"]: item.get("value") for item in container["env"]}
    table: dict[str, Any] = json.loads(settings[env.GATEWAY_ROUTES])
    return table


async def _serving(
    cluster: Cluster, check: Callable[[dict[str, Any]], bool], unready: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Play the Deployment controller (every replica of each current template up and ready, but for ``unready``).

    Returns the ModelDeployment once ``check`` holds.
    """

    async def probe() -> dict[str, Any] | None:
        listed = await cluster.call(cluster.apps.list_namespaced_deployment, NAMESPACE)
        for deployment in listed["items"]:
            name, replicas = deployment["metadata"]["name"], deployment["spec"]["replicas"]
            ready_replicas = 0 if name in unready else replicas
            counts = {"replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready_replicas}
            status = {"observedGeneration": deployment["metadata"]["generation"], **counts}
            await cluster.patch_deployment(name, {"status": status})
        md: dict[str, Any] = await cluster.resource(MODEL_DEPLOYMENTS, NAME)
        return md if check(md) else None

    served: dict[str, Any] = await eventually(probe, "the ModelDeployment to serve")
    return served


async def _until_gone(cluster: Cluster, name: str) -> None:
    """Play the Deployment controller (the gateway rolls to its new table) until a model's Deployment is deleted."""

    async def probe() -> bool:
        await _serving(cluster, lambda _: True)
        return await _missing(cluster.deployment(name))

    await eventually(probe, f"the Deployment {name} to be deleted")


async def _replicas(cluster: Cluster, name: str, replicas: int) -> None:
    async def probe() -> bool:
        return bool((await cluster.deployment(name))["spec"]["replicas"] == replicas)

    await eventually(probe, f"the Deployment {name} to have {replicas} replicas")


async def _version(cluster: Cluster, run: str) -> str:
    """The model version of a TrainingJob's run: its name and the start of its uid."""
    training_job = await cluster.resource("trainingjobs", run)
    return f"{run}-{training_job['metadata']['uid'][:8]}"


async def _exists(read: Any) -> bool:
    try:
        await read
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


async def _missing(read: Any) -> bool:
    return not await _exists(read)


def _ready_message(obj: dict[str, Any]) -> str:
    return str(next(c["message"] for c in obj["status"]["conditions"] if c["type"] == "Ready"))


def test_a_deleted_resource_is_not_held_by_a_running_timer() -> None:
    """kopf keeps its finalizer until a timer caught mid-run returns; it looks again within a second."""
    settings = kopf_settings(OperatorConfig(storage_root="s3://b", trainer_image="t"))
    assert settings.background.cancellation_polling <= 1.0
