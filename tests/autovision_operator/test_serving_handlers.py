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
import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from autovision.contract import env
from autovision.contract.files import DriftReport, DriftTest
from autovision.contract.keys import drift_report_key, prediction_log_prefix
from autovision.resources import API_VERSION
from autovision.serving.traffic import ModelStats, ShadowStats, TrafficStats
from autovision.storage import Storage
from autovision_operator.config import OperatorConfig, kopf_settings
from autovision_operator.serving_builders import ROUTES_ANNOTATION
from tests.support.kube import (
    NAMESPACE,
    ApiServer,
    Cluster,
    eventually,
    gone,
    has_condition,
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
        gateway_deployment = await eventually(lambda: cluster.deployment(NAME), "the gateway Deployment")
        (gateway,) = gateway_deployment["spec"]["template"]["spec"]["containers"]
        assert {"name": "AUTOVISION_GATEWAY_EXPLAINER_URL", "value": f"http://{explainer}.{NAMESPACE}.svc:8090"} in (
            gateway["env"]
        )
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"explain": None})
        await eventually(lambda: _gone(cluster.deployment(explainer)), "the explainer Deployment deleted")
        await eventually(lambda: _gone(cluster.service(explainer)), "the explainer Service deleted")
        await eventually(lambda: has_events(cluster, {"ExplainerDeleted"}), "an ExplainerDeleted event")


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(60)
async def test_spec_logging_gives_the_gateway_the_log_and_the_model_s_credentials(
    cluster: Cluster, serving_config: OperatorConfig
) -> None:
    """The gateway logs with the served run's storage Secret; unset, it gets neither the log nor the Secret."""
    await cluster.create_secret("s3-credentials")
    await cluster.apply("datasets", DATASET)
    await cluster.apply("trainingjobs", succeeded("run-a"))

    async def gateway_container() -> dict[str, Any]:
        (container,) = (await cluster.deployment(NAME))["spec"]["template"]["spec"]["containers"]
        return dict(container)

    async def without_log() -> bool:
        return all(item["name"] != "AUTOVISION_GATEWAY_LOG_RATE" for item in (await gateway_container())["env"])

    async with running_operator(serving_config):
        spec = {"modelRef": {"trainingJob": "run-a"}, "logging": {"rate": 0.1, "images": True}}
        await cluster.apply(MODEL_DEPLOYMENTS, {**MODEL_DEPLOYMENT, "spec": spec})
        await eventually(lambda: cluster.deployment(NAME), "the gateway Deployment")
        gateway = await gateway_container()
        assert {"name": "AUTOVISION_GATEWAY_LOG_RATE", "value": "0.1"} in gateway["env"]
        assert gateway["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"logging": None})
        await eventually(without_log, "the gateway without the log")
        assert "envFrom" not in await gateway_container()


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(60)
async def test_spec_monitoring_adds_the_check_and_its_report_sets_the_drift_condition(
    cluster: Cluster, serving_config: OperatorConfig
) -> None:
    """The CronJob on the run's model directory; Drift Unknown until a check reports, then True or False as the
    report says, with the gauges; the CronJob gone and the condition kept as it was once monitoring is unset."""
    await cluster.create_secret("s3-credentials")
    await cluster.apply("datasets", DATASET)
    run = succeeded("run-a")
    run["status"]["artifacts"]["model"] = f"s3://autovision/runs/{NAMESPACE}/run-a/model"
    await cluster.apply("trainingjobs", run)
    storage = Storage(serving_config.storage_root)
    report_key = drift_report_key(prediction_log_prefix(NAMESPACE, NAME))
    monitor = f"{NAME}-monitor"
    async with running_operator(serving_config):
        spec = {"modelRef": {"trainingJob": "run-a"}, "monitoring": {"schedule": "*/10 * * * *", "windowMinutes": 30}}
        await cluster.apply(MODEL_DEPLOYMENTS, {**MODEL_DEPLOYMENT, "spec": spec})
        built = await eventually(lambda: cluster.cron_job(monitor), "the monitor CronJob")
        (container,) = built["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["args"][:4] == [
            run["status"]["artifacts"]["model"],
            f"--deployment={NAME}",
            f"--namespace={NAMESPACE}",
            "--window-minutes=30",
        ]
        assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
        await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, has_condition("Drift", "NotCheckedYet", "Unknown"))
        assert _drift_gauge() == -1
        storage.write_json(report_key, _drift_report("Drift").to_json())
        drifted = await resource_where(
            cluster, MODEL_DEPLOYMENTS, NAME, has_condition("Drift", "DriftDetected", "True")
        )
        assert "drift in confidence (200 logged predictions" in _condition_message(drifted, "Drift")
        assert _drift_gauge() == 1
        assert REGISTRY.get_sample_value("autovision_drift_p_value", {**_GAUGE_LABELS, "aspect": "confidence"}) == 1e-9
        storage.write_json(report_key, _drift_report("NoDrift").to_json())
        await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, has_condition("Drift", "NoDrift", "False"))
        assert _drift_gauge() == 0
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"monitoring": None})
        await eventually(lambda: _gone(cluster.cron_job(monitor)), "the monitor CronJob deleted")
        await eventually(lambda: has_events(cluster, {"CronJobCreated", "MonitorDeleted"}), "the monitor's events")
        assert _drift_gauge() is None


_GAUGE_LABELS = {"namespace": NAMESPACE, "deployment": NAME}


def _drift_gauge() -> float | None:
    return REGISTRY.get_sample_value("autovision_drift", _GAUGE_LABELS)


def _drift_report(status: str) -> DriftReport:
    drifted = status == "Drift"
    test = DriftTest(aspect="confidence", method="Kolmogorov-Smirnov", statistic=0.4, p_value=1e-9, drift=drifted)
    return DriftReport(
        status=status,
        reason="drift in confidence" if drifted else "no test rejects",
        window_start="2026-12-04T11:30:00+00:00",
        window_end="2026-12-04T12:00:00+00:00",
        model="run-a",
        predictions=200,
        reference_predictions=400,
        threshold=0.05 / 3,
        tests=[test],
    )


def _condition_message(obj: dict[str, Any], type: str) -> str:
    return str(next(c["message"] for c in obj["status"]["conditions"] if c["type"] == type))


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
    switching = await cluster.resource(MODEL_DEPLOYMENTS, NAME)
    assert switching["status"]["modelVersion"] == old_version
    assert ready("Available", "True")(switching), "the old model keeps serving meanwhile"
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
            if status.items() - (deployment.get("status") or {}).items():
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


# --- several models: split, shadow, gated rollouts ----------------------------------------

GATEWAY_LABELS = {
    "app.kubernetes.io/name": "autovision",
    "app.kubernetes.io/instance": NAME,
    "app.kubernetes.io/component": "gateway",
}
SPLIT = [{"trainingJob": "run-a", "percent": 90}, {"trainingJob": "run-b", "percent": 10}]
GATE = {"minRequests": 10, "minAgreement": 0.9, "maxErrorRate": 0.05}
# A rollout stage takes a few reconciliations, each a few dozen API calls: on a loaded machine, seconds each.
SLOW = 60.0


class Gateways:
    """Plays the gateway's pods: one Running pod of the gateway's current template, answering its counts.

    KMock answers ``GET .../pods/NAME:8080/proxy/v1/traffic`` (what the operator asks through the API
    server's pod proxy) with ``counts``, which a scenario sets before the pod routing by a new table appears.
    """

    def __init__(self, kmock: Any, cluster: Cluster) -> None:
        self.cluster = cluster
        self.counts: dict[str, Any] = {}
        kmock[re.compile(r".*/pods/[^/]+/proxy/v1/traffic$")] << (lambda _: self.counts)

    async def count(self, counts: dict[str, Any]) -> None:
        """Replace the gateway pod by one of the current template, counting ``counts``."""
        self.counts = counts
        gateway = await self.cluster.deployment(NAME)
        template = gateway["spec"]["template"]["metadata"]
        name = f"{NAME}-gateway-{template['annotations'][ROUTES_ANNOTATION][:8]}"
        pods = await self.cluster.call(self.cluster.core.list_namespaced_pod, NAMESPACE)
        for pod in pods["items"]:
            if pod["metadata"]["name"] != name:
                await self.cluster.call(self.cluster.core.delete_namespaced_pod, pod["metadata"]["name"], NAMESPACE)
        if not await _exists(self.cluster.call(self.cluster.core.read_namespaced_pod, name, NAMESPACE)):
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": template["labels"], "annotations": template["annotations"]},
                "spec": {"containers": [{"name": "gateway", "image": "gateway"}]},
            }
            await self.cluster.call(self.cluster.core.create_namespaced_pod, NAMESPACE, pod)
            await self.cluster.call(
                self.cluster.core.patch_namespaced_pod_status, name, NAMESPACE, {"status": {"phase": "Running"}}
            )


def answered(**requests: int) -> dict[str, Any]:
    """Counts of a gateway whose models each answered this many requests, in 3 ms, without errors."""
    models = {}
    for run, count in requests.items():
        stats = ModelStats()
        for _ in range(count):
            stats.observe(3.0, ok=True)
        models[run] = stats
    return TrafficStats(models=models).model_dump(mode="json")


def shadowed(primary: str, shadow: str, compared: int, agreed: int) -> dict[str, Any]:
    counts = answered(**{primary: compared})
    counts["shadow"] = ShadowStats(run=shadow, compared=compared, agreed=agreed).model_dump(mode="json")
    return counts


async def routed(
    cluster: Cluster, split: dict[str, int], shadow: str | None = None, unready: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Play the Deployment controller until the gateway routes by ``split`` (and ``shadow``); the ModelDeployment."""

    def check(_: dict[str, Any]) -> bool:
        return True

    async def probe() -> dict[str, Any] | None:
        md = await _serving(cluster, check, unready)
        table = routes_of(await cluster.deployment(NAME))
        have = {backend["run"]: backend["percent"] for backend in table["backends"]}
        return md if (have, (table.get("shadow") or {}).get("run")) == (split, shadow) else None

    found: dict[str, Any] = await eventually(probe, f"the gateway to route by {split}, shadow {shadow}", SLOW)
    return found


def condition(obj: dict[str, Any], type: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type)


async def model_deployment_with(cluster: Cluster, spec: dict[str, Any]) -> None:
    await cluster.create_secret("s3-credentials")
    await cluster.apply("datasets", DATASET)
    for run in (succeeded("run-a"), succeeded("run-b"), succeeded("run-c"), FAILED_RUN):
        await cluster.apply("trainingjobs", run)
    await cluster.apply(MODEL_DEPLOYMENTS, {**MODEL_DEPLOYMENT, "spec": spec})


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_split_with_a_shadow_counts_each_model_and_refuses_bad_runs(
    kmock: Any, cluster: Cluster, serving_config: OperatorConfig
) -> None:
    """Two models share the traffic, a third shadows them; a missing or unfinished run changes nothing served."""
    gateways = Gateways(kmock, cluster)
    await model_deployment_with(cluster, {"traffic": SPLIT, "shadow": {"trainingJob": "run-c"}})
    async with running_operator(serving_config):
        await routed(cluster, {"run-a": 90, "run-b": 10}, "run-c")
        for run in ("run-a", "run-b", "run-c"):
            assert await _exists(cluster.deployment(f"{NAME}-{run}"))
        counts = shadowed("run-a", "run-c", compared=90, agreed=81)
        counts["models"] |= answered(**{"run-b": 10})["models"]
        await gateways.count(counts)
        md = await resource_where(
            cluster, MODEL_DEPLOYMENTS, NAME, lambda md: (md["status"].get("shadow") or {}).get("compared") == 90
        )
        traffic = {item["trainingJob"]: item for item in md["status"]["traffic"]}
        assert (traffic["run-a"]["percent"], traffic["run-a"]["requests"], traffic["run-a"]["p99Ms"]) == (90, 90, 3)
        assert (traffic["run-b"]["percent"], traffic["run-b"]["requests"]) == (10, 10)
        assert md["status"]["shadow"]["agreement"] == 0.9
        assert {entry["trainingJob"] for entry in md["status"]["history"]} == {"run-a", "run-b"}  # not the shadow

        missing = [{"trainingJob": "run-a", "percent": 50}, {"trainingJob": "missing-run", "percent": 50}]
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"traffic": missing})
        waiting = await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, ready("TrainingJobNotFound", "False"))
        assert "still serving" in _ready_message(waiting)
        unfinished = [{"trainingJob": "run-a", "percent": 50}, {"trainingJob": "failed-run", "percent": 50}]
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"traffic": unfinished})
        await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, ready("ModelNotReady", "False"))
        table = routes_of(await cluster.deployment(NAME))
        assert [(b["run"], b["percent"]) for b in table["backends"]] == [("run-a", 90), ("run-b", 10)]
        assert not await _exists(cluster.deployment(f"{NAME}-failed-run"))


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_gated_rollout_promotes_step_by_step_across_an_operator_restart(
    kmock: Any, cluster: Cluster, serving_config: OperatorConfig
) -> None:
    """Shadowing, then 50 %, then 100 %: each stage gated on the counts of the gateways routing by it."""
    gateways = Gateways(kmock, cluster)
    rollout = {"steps": [50, 100], "gate": GATE}
    await model_deployment_with(cluster, {"modelRef": {"trainingJob": "run-a"}, "rollout": rollout})
    async with running_operator(serving_config):
        await routed(cluster, {"run-a": 100})  # the first model: nothing to roll out against
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": "run-b"}})
        md = await routed(cluster, {"run-a": 100}, "run-b")
        assert condition(md, "Rollout")["reason"] == "Progressing"
        await gateways.count(shadowed("run-a", "run-b", compared=10, agreed=10))
        await routed(cluster, {"run-a": 50, "run-b": 50})
    # The operator restarts mid-rollout: its state is in status, so it goes on from 50 %.
    async with running_operator(serving_config):
        await asyncio.sleep(0.5)
        assert (await cluster.resource(MODEL_DEPLOYMENTS, NAME))["status"]["rollout"]["percent"] == 50
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"rollout": {"paused": True}})
        await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, has_condition("Rollout", "Paused", "True"), SLOW)
        await gateways.count(answered(**{"run-a": 10, "run-b": 10}))
        await asyncio.sleep(0.5)
        assert (await cluster.resource(MODEL_DEPLOYMENTS, NAME))["status"]["rollout"]["percent"] == 50
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"rollout": {"paused": False}})
        await routed(cluster, {"run-b": 100})
        await gateways.count(answered(**{"run-b": 10}))
        md = await resource_where(cluster, MODEL_DEPLOYMENTS, NAME, has_condition("Rollout", "Promoted", "False"), SLOW)
        await _until_gone(cluster, f"{NAME}-run-a")
        md = await cluster.resource(MODEL_DEPLOYMENTS, NAME)
        history = [(entry["trainingJob"], entry.get("ended")) for entry in md["status"]["history"]]
        assert history == [("run-b", None), ("run-a", "replaced by run-b in a rollout")]
        expected = {"RolloutProgressing", "RolloutPaused", "RolloutPromoted", "ModelRemoved"}
        await eventually(lambda: has_events(cluster, expected), f"events {expected}")


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_rollout_rolls_back_a_disagreeing_or_never_ready_candidate(
    kmock: Any, cluster: Cluster, serving_config: OperatorConfig
) -> None:
    """A candidate that disagrees with the served model, or whose pods never get ready, leaves it serving."""
    gateways = Gateways(kmock, cluster)
    rollout = {"steps": [50, 100], "gate": GATE, "readinessTimeoutSeconds": 2}
    await model_deployment_with(cluster, {"modelRef": {"trainingJob": "run-a"}, "rollout": rollout})
    async with running_operator(serving_config):
        await routed(cluster, {"run-a": 100})
        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": "run-b"}})
        await routed(cluster, {"run-a": 100}, "run-b")
        await gateways.count(shadowed("run-a", "run-b", compared=10, agreed=5))
        md = await resource_where(
            cluster, MODEL_DEPLOYMENTS, NAME, has_condition("Rollout", "RolledBack", "False"), SLOW
        )
        assert md["status"]["rollout"]["message"].endswith("back to run-a")
        assert "agreed with run-a on 50.0%" in md["status"]["rollout"]["message"]
        await routed(cluster, {"run-a": 100})
        await _until_gone(cluster, f"{NAME}-run-b")

        await cluster.patch_spec(MODEL_DEPLOYMENTS, NAME, {"modelRef": {"trainingJob": "run-c"}})
        unready = frozenset({f"{NAME}-run-c"})
        await eventually(lambda: cluster.deployment(f"{NAME}-run-c"), "the candidate's Deployment")

        async def rolled_back() -> dict[str, Any] | None:
            md = await _serving(cluster, lambda _: True, unready)
            rollout = md["status"]["rollout"]
            return md if (rollout["candidate"], rollout["phase"]) == ("run-c", "RolledBack") else None

        md = await eventually(rolled_back, "the never-ready candidate to be rolled back", SLOW)
        assert (md["status"]["rollout"]["candidate"], md["status"]["rollout"]["stable"]) == ("run-c", "run-a")
        assert "not all ready within 2 s" in md["status"]["rollout"]["message"]
        assert md["status"]["modelVersion"] == await _version(cluster, "run-a")
        expected = {"RolloutProgressing", "RolloutRolledBack"}
        await eventually(lambda: has_events(cluster, expected), f"events {expected}")
