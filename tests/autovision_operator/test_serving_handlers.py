"""ModelDeployments as the operator serves them: kopf's KopfRunner against KMock.

The scenario plays the Deployment controller (patching Deployment status) and the
autoscaler (patching Deployment replicas). KMock has no scale subresource, so
``kubectl scale modeldeployment/flowers --replicas=3`` is played by patching
``spec.nodes``, the field the CRD's scale subresource maps ``replicas`` to; and no
garbage collector, so deletion checks the owner references it would follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

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
SELECTOR = "app.kubernetes.io/component=serving,app.kubernetes.io/instance=flowers,app.kubernetes.io/name=autovision"
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
        expected |= {"AutoscalerDeleted"}
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
        triton = await eventually(lambda: cluster.deployment(NAME), "the Triton Deployment")
        pod = triton["spec"]["template"]["spec"]
        assert (pod["serviceAccountName"], pod["automountServiceAccountToken"]) == ("autovision-serving", True)
        ports = {port["name"] for port in (await cluster.service(NAME))["spec"]["ports"]}
        assert ports == {"metrics", "predict", "google-grpc"}


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(60)
async def test_spec_explain_adds_the_explainer_and_unsetting_it_removes_it(
    cluster: Cluster, serving_config: OperatorConfig
) -> None:
    """The explainer's Deployment and Service on the run's model directory, with its credentials; the gateway
    pointed at it; both gone once spec.explain is unset."""
    await cluster.create_secret("s3-credentials")
    await cluster.apply("datasets", DATASET)
    run = succeeded("run-a")
    run["status"]["artifacts"]["model"] = f"s3://autovision/runs/{NAMESPACE}/run-a/model"
    await cluster.apply("trainingjobs", run)
    explainer = f"{NAME}-explainer"
    async with running_operator(serving_config):
        spec = {"modelRef": {"trainingJob": "run-a"}, "explain": {"cpu": "2"}}
        await cluster.apply(MODEL_DEPLOYMENTS, {**MODEL_DEPLOYMENT, "spec": spec})
        built = await eventually(lambda: cluster.deployment(explainer), "the explainer Deployment")
        (container,) = built["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == f"s3://autovision/runs/{NAMESPACE}/run-a/model"
        assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        assert container["resources"]["requests"]["cpu"] == "2"
        await eventually(lambda: cluster.service(explainer), "the explainer Service")
        triton = await cluster.deployment(NAME)
        gateway = triton["spec"]["template"]["spec"]["containers"][1]
        assert {"name": "AUTOVISION_GATEWAY_EXPLAINER_URL", "value": f"http://{explainer}.{NAMESPACE}.svc:8090"} in (
            gateway["env"]
        )
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"explain": None})
        await eventually(lambda: _gone(cluster.deployment(explainer)), "the explainer Deployment deleted")
        await eventually(lambda: _gone(cluster.service(explainer)), "the explainer Service deleted")
        await eventually(lambda: has_events(cluster, {"ExplainerDeleted"}), "an ExplainerDeleted event")


async def _gone(read: Any) -> bool:
    return not await _exists(read)


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
    triton = await eventually(lambda: cluster.deployment(NAME), "the Triton Deployment")
    md = await cluster.resource(MODEL_DEPLOYMENTS, NAME)
    uid = md["metadata"]["uid"]
    assert triton["spec"]["replicas"] == 2
    assert triton["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    triton_container = triton["spec"]["template"]["spec"]["containers"][0]
    assert f"--model-repository=s3://seaweedfs.storage:8333/autovision/runs/ml/{run}/triton" in triton_container["args"]
    assert triton_container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]  # the Dataset's credentials
    service = await eventually(lambda: cluster.service(NAME), "the Service")
    budget = await eventually(lambda: cluster.pod_disruption_budget(NAME), "the PodDisruptionBudget")
    for child in (triton, service, budget):
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("ModelDeployment", uid, True)
    assert not await _exists(cluster.autoscaler(NAME))

    served = await _serving(cluster, ready("Available", "True"))
    status = served["status"]
    assert status["modelVersion"] == await _version(cluster, run)
    assert (status["nodes"], status["readyNodes"], status["selector"]) == (2, 2, SELECTOR)
    assert status["endpoints"] == {
        "http": "flowers.ml.svc:8000",
        "grpc": "flowers.ml.svc:8001",
        "predict": "http://flowers.ml.svc:8080/v1/models/flowers:predict",
        "googleRest": "http://flowers.ml.svc:8080",
        "googleGrpc": "flowers.ml.svc:8081",
        "automlModel": "projects/ml/locations/cluster/models/flowers",
        "vertexEndpoint": "projects/ml/locations/cluster/endpoints/flowers",
    }
    assert status["observedGeneration"] == served["metadata"]["generation"]
    return str(uid)


async def scales_with_nodes(cluster: Cluster) -> None:
    """``kubectl scale`` (spec.nodes) sets the Deployment's replicas."""
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"nodes": 3})
    await _replicas(cluster, 3)
    await _serving(cluster, lambda md: md["status"]["readyNodes"] == 3)


async def autoscaling_owns_the_replicas(cluster: Cluster) -> None:
    """With autoscaling, an owned HPA appears with nodes as its floor, and the replicas are left to it."""
    autoscaling = {"minNodes": 1, "maxNodes": 6, "target": "inflight"}
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"autoscaling": autoscaling})
    autoscaler = await eventually(lambda: cluster.autoscaler(NAME), "the HorizontalPodAutoscaler")
    assert (autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]) == (3, 6)
    assert autoscaler["spec"]["metrics"][0]["pods"]["metric"]["name"] == "nv_inference_pending_request_count"
    assert autoscaler["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"

    await cluster.patch_deployment(NAME, {"spec": {"replicas": 5}})  # the autoscaler scales out
    await _serving(cluster, lambda md: (md["status"]["nodes"], md["status"]["readyNodes"]) == (5, 5))
    await asyncio.sleep(1.0)  # several reconciliations
    assert (await cluster.deployment(NAME))["spec"]["replicas"] == 5


async def a_new_model_rolls_out(cluster: Cluster, old: str, new: str) -> None:
    """Another TrainingJob's model changes the pod template; modelVersion follows once the rollout completes."""
    old_version, new_version = await _version(cluster, old), await _version(cluster, new)
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": new}})

    async def new_template() -> dict[str, Any] | None:
        triton: dict[str, Any] = await cluster.deployment(NAME)
        annotations = triton["spec"]["template"]["metadata"]["annotations"]
        return triton if annotations["autovision.dev/model-version"] == new_version else None

    triton = await eventually(new_template, "the new model in the pod template")
    assert (
        f"--model-repository=s3://seaweedfs.storage:8333/autovision/runs/ml/{new}/triton"
        in (triton["spec"]["template"]["spec"]["containers"][0]["args"])
    )
    assert triton["spec"]["replicas"] == 5  # still the autoscaler's
    rolling = await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, ready("RollingOut", "False"))
    assert rolling["status"]["modelVersion"] == old_version
    served = await _serving(cluster, lambda md: md["status"].get("modelVersion") == new_version)
    assert ready("Available", "True")(served)


async def nodes_own_the_replicas_again(cluster: Cluster) -> None:
    """Without autoscaling the HPA goes and spec.nodes sets the replicas again."""
    await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"autoscaling": None})
    await eventually(lambda: _missing(cluster.autoscaler(NAME)), "the HorizontalPodAutoscaler to be deleted")
    await _replicas(cluster, 3)


async def children_go_with_the_model_deployment(cluster: Cluster, owner_uid: str) -> None:
    """Deleting the ModelDeployment releases it (kopf's finalizer); its children carry owner references for the GC."""
    await cluster.delete(MODEL_DEPLOYMENTS, NAME)
    await eventually(lambda: gone(cluster, MODEL_DEPLOYMENTS, NAME), "the ModelDeployment to be deleted")
    for read in (cluster.deployment, cluster.service, cluster.pod_disruption_budget):
        (owner,) = (await read(NAME))["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["blockOwnerDeletion"]) == (owner_uid, True)


async def _serving(cluster: Cluster, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Play the Deployment controller (every replica of the current template up and ready) until ``check`` holds."""

    async def probe() -> dict[str, Any] | None:
        triton = await cluster.deployment(NAME)
        replicas = triton["spec"]["replicas"]
        counts = dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), replicas)
        status = {"observedGeneration": triton["metadata"]["generation"], **counts}
        await cluster.patch_deployment(NAME, {"status": status})
        md: dict[str, Any] = await cluster.resource(MODEL_DEPLOYMENTS, NAME)
        return md if check(md) else None

    served: dict[str, Any] = await eventually(probe, "the ModelDeployment to serve")
    return served


async def _replicas(cluster: Cluster, replicas: int) -> None:
    async def probe() -> bool:
        return bool((await cluster.deployment(NAME))["spec"]["replicas"] == replicas)

    await eventually(probe, f"the Deployment to have {replicas} replicas")


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
