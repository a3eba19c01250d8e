"""The pure serving builders: which model is served, and every child object, schema-valid."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from autovision.contract import env
from autovision.preprocess import ImageLimits
from autovision.resources import ModelDeployment, TrainingJob, parse_resource
from autovision.serving.cluster import DEFAULT_MAX_BATCH_SIZE
from autovision.serving.gateway import max_request_bytes
from autovision.serving.repository import DecodeBudget
from autovision.serving.traffic import Routes
from autovision.settings import Settings
from autovision_operator import serving_builders as sb
from autovision_operator.config import TRITON_IMAGE, OperatorConfig
from autovision_operator.reconcile import NotReadyError
from tests.support.operator import make_config, make_dataset

K8S_VERSION = kubernetes_validate.latest_version()
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ENDPOINT = "http://seaweedfs.storage:8333"
REPOSITORY = "s3://autovision/runs/ml/flowers-run/0f1e2d3c-aaaa/triton"


def make_model_deployment(name: str = "flowers", namespace: str = "ml", **spec: Any) -> ModelDeployment:
    obj = {
        "apiVersion": "autovision.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-md"},
        "spec": {"modelRef": {"trainingJob": "flowers-run"}, **spec},
    }
    deployment = parse_resource(obj)
    assert isinstance(deployment, ModelDeployment)
    return deployment


def training_job(ready: bool = True, artifacts: dict[str, str] | None = None) -> TrainingJob:
    condition = (
        {"type": "Ready", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-11-23T12:00:00Z"}
        if ready
        else {
            "type": "Ready",
            "status": "False",
            "reason": "Searching",
            "message": "3 trials done",
            "lastTransitionTime": "2026-11-23T12:00:00Z",
        }
    )
    run = parse_resource(
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "flowers-run", "namespace": "ml", "uid": "0f1e2d3c-aaaa-bbbb"},
            "spec": {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 1000},
            "status": {"conditions": [condition], "artifacts": artifacts if artifacts is not None else {}},
        }
    )
    assert isinstance(run, TrainingJob)
    return run


def model(version: str = "flowers-run-0f1e2d3c", run: str = "flowers-run") -> sb.ServedModel:
    return sb.ServedModel(run, sb.triton_repository_url(REPOSITORY, ENDPOINT), version, "flowers")


def validate(obj: dict[str, Any]) -> None:
    """Strict: unknown fields are errors too."""
    kubernetes_validate.validate(obj, K8S_VERSION, True)


def deployment_for(config: OperatorConfig | None = None, secret: str | None = "s3-credentials", **spec: Any) -> Any:
    return sb.build_triton_deployment(make_model_deployment(**spec), model(), config or make_config(), secret)


def gateway_for(config: OperatorConfig | None = None, **spec: Any) -> Any:
    md = make_model_deployment(**spec)
    return sb.build_gateway_deployment(md, sb.routes(md, {"flowers-run": 100}, None), config or make_config())


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {container["name"]: container for container in deployment["spec"]["template"]["spec"]["containers"]}


# --- Triton's S3 URLs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "endpoint", "expected"),
    [
        ("s3://bucket/runs/ml/x/triton", None, "s3://bucket/runs/ml/x/triton"),
        ("s3://bucket/runs/ml/x/triton/", "", "s3://bucket/runs/ml/x/triton"),
        ("s3://bucket/runs/x", "http://seaweedfs.storage:8333", "s3://seaweedfs.storage:8333/bucket/runs/x"),
        ("s3://bucket/runs/x", "http://minio.storage", "s3://minio.storage:80/bucket/runs/x"),
        ("s3://bucket/runs/x", "https://s3.example.com", "s3://https://s3.example.com:443/bucket/runs/x"),
        ("s3://bucket/runs/x", "https://10.0.0.7:9000/", "s3://https://10.0.0.7:9000/bucket/runs/x"),
        ("s3://bucket", "http://host:9000", "s3://host:9000/bucket"),
    ],
)
def test_triton_repository_url(uri: str, endpoint: str | None, expected: str) -> None:
    assert sb.triton_repository_url(uri, endpoint) == expected


@pytest.mark.parametrize(
    ("uri", "endpoint", "message"),
    [
        ("file:///data/triton", None, "s3://bucket/prefix"),
        ("gs://bucket/triton", None, "s3://bucket/prefix"),
        ("s3:///triton", None, "s3://bucket/prefix"),
        ("s3://Bucket/triton", None, "buckets of"),
        ("s3://bucket/model=1/triton", None, "keys of"),
        ("s3://bucket/triton", "seaweedfs:8333", "http(s)://host"),
        ("s3://bucket/triton", "http://host:9000/s3", "http(s)://host"),
        ("s3://bucket/triton", "http://[fd00::1]:9000", "hosts of"),
    ],
)
def test_triton_repository_url_refuses_what_triton_misreads(uri: str, endpoint: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sb.triton_repository_url(uri, endpoint)


# --- which model ----------------------------------------------------------------------


def test_a_ready_training_job_serves_its_triton_repository() -> None:
    served = sb.trained_model(training_job(artifacts={"tritonRepository": REPOSITORY}), ENDPOINT)
    assert served == sb.ServedModel(
        "flowers-run",
        "s3://seaweedfs.storage:8333/autovision/runs/ml/flowers-run/0f1e2d3c-aaaa/triton",
        "flowers-run-0f1e2d3c",
        "flowers",
    )


def test_the_cluster_layout_is_preferred_over_the_local_one() -> None:
    artifacts = {"tritonRepository": REPOSITORY, "tritonClusterRepository": REPOSITORY + "-cluster"}
    served = sb.trained_model(training_job(artifacts=artifacts), ENDPOINT)
    assert served.repository.endswith("/triton-cluster")


def test_a_uri_is_served_as_is_and_versioned_by_its_digest() -> None:
    served = sb.uri_model("s3://models/flowers/v3", None)
    assert served.repository == "s3://models/flowers/v3"
    assert re.fullmatch(r"uri-[0-9a-f]{12}", served.version)
    assert served.dataset is None
    assert sb.uri_model("s3://models/flowers/v4", None).version != served.version


@pytest.mark.parametrize(
    ("run", "reason", "message"),
    [
        (training_job(ready=False), "ModelNotReady", "has no model yet (Searching: 3 trials done)"),
        (training_job(), "ModelNotReady", "has no status.artifacts.tritonClusterRepository"),
        (training_job(artifacts={"tritonRepository": "file:///tmp/x"}), "UnsupportedModelUri", "s3://bucket/prefix"),
    ],
)
def test_a_model_that_cannot_be_served_says_why(run: TrainingJob, reason: str, message: str) -> None:
    """A missing or invalid TrainingJob is ``reconcile.referenced``'s (tests/test_operator_reconcile.py)."""
    with pytest.raises(NotReadyError, match=re.escape(message)) as raised:
        sb.trained_model(run, None)
    assert raised.value.reason == reason


def test_an_unsupported_uri_is_not_served() -> None:
    with pytest.raises(NotReadyError, match=re.escape("s3://bucket/prefix")) as raised:
        sb.uri_model("file:///tmp/x", None)
    assert raised.value.reason == "UnsupportedModelUri"


def test_serving_reads_the_model_with_the_credentials_that_wrote_it() -> None:
    config = make_config(storage_secret="operator-s3")
    assert sb.serving_secret(make_model_deployment(), make_dataset(secret="s3-credentials"), config) == "s3-credentials"
    in_operator_namespace = make_model_deployment(namespace="autovision-system")
    assert sb.serving_secret(in_operator_namespace, None, config) == "operator-s3"
    assert sb.serving_secret(make_model_deployment(), None, config) is None  # ambient credentials


# --- names and endpoints --------------------------------------------------------------


@pytest.mark.parametrize("name", ["flowers", "flowers.v2", "2024-flowers", "x" * 253, "a" * 60 + ".b"])
def test_children_have_a_service_name(name: str) -> None:
    child = sb.serving_name(make_model_deployment(name=name))
    assert DNS_1035_LABEL.match(child)
    assert len(child) <= 63
    assert child == sb.serving_name(make_model_deployment(name=name))  # deterministic


@pytest.mark.parametrize("run", ["flowers-run", "run.v2", "r" * 253])
def test_each_model_has_its_own_service_name(run: str) -> None:
    name = sb.model_name(make_model_deployment(), run)
    assert DNS_1035_LABEL.match(name)
    assert len(name) <= 63
    assert name != sb.model_name(make_model_deployment(), run + "x")


def test_endpoints_are_the_gateways_and_the_primary_models_kserve() -> None:
    endpoints = sb.serving_endpoints(make_model_deployment(), "flowers-run")
    assert endpoints.http == "flowers-flowers-run.ml.svc:8000"  # one model's Triton: bypasses the split
    assert endpoints.grpc == "flowers-flowers-run.ml.svc:8001"
    assert endpoints.predict == "http://flowers.ml.svc:8080/v1/models/flowers:predict"


def test_routes_send_each_run_to_its_triton_service_and_travel_in_the_gateways_env() -> None:
    md = make_model_deployment()
    table = sb.routes(md, {"run-a": 90, "run-b": 10}, "run-c")
    assert [(b.run, b.triton_url, b.percent) for b in table.backends] == [
        ("run-a", "flowers-run-a.ml.svc:8000", 90),
        ("run-b", "flowers-run-b.ml.svc:8000", 10),
    ]
    assert table.shadow is not None
    assert table.shadow.triton_url == "flowers-run-c.ml.svc:8000"
    gateway = sb.build_gateway_deployment(md, table, make_config())
    validate(gateway)
    assert sb.applied_routes(gateway) == table
    annotations = gateway["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {sb.ROUTES_ANNOTATION: sb.routes_digest(table)}
    other = sb.routes(md, {"run-a": 50, "run-b": 50}, None)
    assert sb.routes_digest(other) != sb.routes_digest(table)
    sticky = make_model_deployment(stickyHeader="X-User")
    assert sb.routes(sticky, {"run-a": 100}, None).sticky_header == "X-User"
    broken = {**gateway, "spec": {**gateway["spec"]}}
    broken["spec"]["template"] = {"spec": {"containers": [{"name": "gateway", "env": []}]}}
    assert sb.applied_routes(broken) is None


# --- Deployment -----------------------------------------------------------------------


def test_deployment_is_valid_and_owned() -> None:
    deployment = deployment_for(nodes=2)
    validate(deployment)
    meta = deployment["metadata"]
    assert (meta["name"], meta["namespace"]) == ("flowers-flowers-run", "ml")
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "ModelDeployment",
            "name": "flowers",
            "uid": "uid-md",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    assert selector["app.kubernetes.io/component"] == "serving"
    assert selector[sb.MODEL_LABEL] == "flowers-run"


def test_the_gateway_is_its_own_deployment_scaled_on_its_own() -> None:
    gateway = gateway_for(nodes=4)
    validate(gateway)
    assert gateway["metadata"]["name"] == "flowers"
    assert gateway["spec"]["replicas"] == sb.GATEWAY_REPLICAS  # not spec.nodes: that is each model's
    selector = gateway["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "gateway"
    assert set(containers(gateway)) == {"gateway"}
    assert "nvidia.com/gpu" not in containers(gateway)["gateway"]["resources"].get("limits", {})
    assert "nodeSelector" not in gateway["spec"]["template"]["spec"]


def test_rollouts_keep_capacity_and_a_new_model_changes_the_template() -> None:
    deployment = deployment_for()
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"] == {sb.MODEL_VERSION_ANNOTATION: "flowers-run-0f1e2d3c"}
    other = sb.build_triton_deployment(make_model_deployment(), model("other-run-12345678"), make_config(), None)
    assert other["spec"]["template"] != template


def test_triton_reads_the_repository_from_s3_with_the_secret() -> None:
    triton = containers(deployment_for())["triton"]
    assert triton["image"] == TRITON_IMAGE
    assert triton["command"] == ["tritonserver"]
    expected = "--model-repository=s3://seaweedfs.storage:8333/autovision/runs/ml/flowers-run/0f1e2d3c-aaaa/triton"
    assert expected in triton["args"]
    assert triton["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert "envFrom" not in containers(deployment_for(secret=None))["triton"]


def test_triton_serves_three_ports_with_health_probes() -> None:
    triton = containers(deployment_for())["triton"]
    ports = {port["name"]: port["containerPort"] for port in triton["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10 * 60  # room for the model download


def test_triton_gets_a_gpu_on_gpu_nodes() -> None:
    deployment = deployment_for()
    pod = deployment["spec"]["template"]["spec"]
    assert containers(deployment)["triton"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    plain = deployment_for(make_config(gpu_node_selector={}, gpu_tolerations=[]))
    assert "nodeSelector" not in plain["spec"]["template"]["spec"]
    assert "tolerations" not in plain["spec"]["template"]["spec"]


def test_pods_run_restricted_with_writable_scratch_only() -> None:
    deployment = deployment_for()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in [*pod["containers"], *gateway_for()["spec"]["template"]["spec"]["containers"]]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["runAsUser"] > 0
        assert container["resources"]["requests"]["cpu"]  # the HPA's CPU utilisation needs requests
    mounts = {mount["mountPath"]: mount["name"] for mount in containers(deployment)["triton"]["volumeMounts"]}
    volumes = {volume["name"]: volume["emptyDir"] for volume in pod["volumes"]}
    assert volumes[mounts["/dev/shm"]]["medium"] == "Memory"
    assert "/tmp" in mounts


def test_the_gateway_routes_by_its_table() -> None:
    gateway = containers(gateway_for(scoreThreshold=0.3))["gateway"]
    assert gateway["image"] == "ghcr.io/autovision/trainer:0.1.0"  # the trainer image unless configured
    assert gateway["command"] == ["python", "-m", "autovision.serving.gateway"]
    assert not [arg for arg in gateway["args"] if arg.startswith("--triton-url")]  # the routes name the models
    assert "--score-threshold=0.3" in gateway["args"]
    assert gateway["ports"] == [
        {"name": "predict", "containerPort": 8080, "protocol": "TCP"},
        {"name": "google-grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert "--grpc-port=8081" in gateway["args"]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "predict"}
    configured = gateway_for(make_config(gateway_image="ghcr.io/autovision/gateway:0.1.0"))
    assert containers(configured)["gateway"]["image"] == "ghcr.io/autovision/gateway:0.1.0"


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def test_the_gateway_gets_the_operators_image_policy_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(
        max_image_bytes=4 * 1024**2,
        max_image_pixels=20_000_000,
        decode_memory_bytes=10**9,
        gateway_max_concurrency=8,
        gateway_max_queue=5,
        gateway_body_timeout_seconds=12.5,
        gateway_upstream_timeout_seconds=40,
    )
    deployment = gateway_for(config)
    validate(deployment)
    settings = env_of(containers(deployment)["gateway"])
    assert sb.applied_routes(deployment) == Routes.model_validate_json(settings.pop(env.GATEWAY_ROUTES))
    assert settings == {
        "HOME": "/tmp",
        env.MAX_IMAGE_BYTES: "4194304",
        env.MAX_IMAGE_PIXELS: "20000000",
        env.DECODE_MEMORY_BYTES: "1000000000",
        env.GATEWAY_MAX_CONCURRENCY: "8",
        env.GATEWAY_MAX_QUEUE: "5",
        env.GATEWAY_BODY_TIMEOUT_SECONDS: "12.5",
        env.GATEWAY_UPSTREAM_TIMEOUT_SECONDS: "40",
    }
    # What the gateway process makes of them: the settings the operator holds.
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    read = Settings()
    assert read.image_limits() == config.image_limits()
    assert read.decode_memory_bytes == config.decode_memory_bytes
    assert (read.gateway_max_queue, read.gateway_body_timeout_seconds) == (5, 12.5)


MIB = 1024**2


def test_triton_memory_is_the_worst_case_of_the_default_policy() -> None:
    memory = sb.TritonMemory.from_config(make_config())
    limits = ImageLimits()

    # 3 decoding instances (2 GiB / 716 MB), as export writes them; batches of 32 images of 30 MiB.
    assert DecodeBudget().instances() == 3
    assert memory.decoded == 3 * limits.max_pixels * 8
    assert memory.shared == 3 * 32 * 30 * MIB + sb.SHM_OVERHEAD_BYTES
    assert memory.executing == 2 * 3 * 32 * 30 * MIB  # twice in each stub's heap
    assert memory.received == (3 + 2) * 32 * 30 * MIB  # the executing batches and two queued, in the server
    assert sb.mebibytes(memory.total()) == "16768Mi"  # 2048 + 3136 + 5760 + 4800 + 1024 MiB: 16.4 GiB
    assert sb.TRITON_MAX_BATCH_SIZE == DEFAULT_MAX_BATCH_SIZE, "the arithmetic's batch is the cluster layout's"


def test_triton_memory_and_shm_follow_the_image_policy() -> None:
    config = make_config(max_image_bytes=MIB, max_image_pixels=8_000_000, decode_memory_bytes=2 * 64_000_000)
    deployment = deployment_for(config)
    validate(deployment)
    memory = sb.TritonMemory.from_config(config)
    triton = containers(deployment)["triton"]
    pod = deployment["spec"]["template"]["spec"]

    assert memory.decoded == 2 * 8_000_000 * 8  # two instances
    size = sb.mebibytes(memory.total())
    assert triton["resources"]["requests"]["memory"] == triton["resources"]["limits"]["memory"] == size
    shared = 2 * 32 * MIB + sb.SHM_OVERHEAD_BYTES  # two batches of 32 images of 1 MiB in /dev/shm
    in_stubs, in_server = 2 * 2 * 32 * MIB, (2 + 2) * 32 * MIB
    assert size == sb.mebibytes(2 * 64_000_000 + shared + in_stubs + in_server + sb.TRITON_BASE_BYTES)
    mounts = {mount["mountPath"]: mount["name"] for mount in triton["volumeMounts"]}
    (shm,) = [volume["emptyDir"] for volume in pod["volumes"] if volume["name"] == mounts["/dev/shm"]]
    assert shm == {"medium": "Memory", "sizeLimit": sb.mebibytes(shared)}
    assert sb.mebibytes(1) == "1Mi"
    assert sb.mebibytes(MIB + 1) == "2Mi"


def test_gateway_memory_is_the_worst_case_of_the_default_bounds() -> None:
    memory = sb.GatewayMemory.from_config(make_config())
    body = 40 * MIB + 64 * 1024  # the base64 of 30 MiB, plus parameters

    assert sb.request_body_bytes(30 * MIB) == body
    assert memory.working == 4 * (2 * body + 6 * 30 * MIB)  # 4 at work, 260 MiB each
    assert memory.waiting == 32 * 2 * body  # 32 waiting, each a received and parsed gRPC message at worst
    assert sb.mebibytes(memory.total()) == "3861Mi"  # 1041 + 2564 + 256 MiB
    for size in (1, 2, 3, 4, MIB, 30 * MIB, 30 * MIB + 1):
        assert sb.request_body_bytes(size) == max_request_bytes(size), "the gateway's own body limit"


def test_gateway_memory_request_follows_the_body_limit_and_bounds() -> None:
    config = make_config(max_image_bytes=3 * MIB, gateway_max_concurrency=2, gateway_max_queue=10)
    deployment = gateway_for(config)
    validate(deployment)
    gateway = containers(deployment)["gateway"]

    body = 4 * MIB + 64 * 1024
    size = sb.mebibytes(2 * (2 * body + 6 * 3 * MIB) + 10 * 2 * body + sb.GATEWAY_BASE_BYTES)
    assert gateway["resources"]["requests"] == {"cpu": sb.GATEWAY_CPU_REQUEST, "memory": size}
    no_queue = make_config(max_image_bytes=3 * MIB, gateway_max_concurrency=2, gateway_max_queue=0)
    assert sb.GatewayMemory.from_config(no_queue).total() < sb.GatewayMemory.from_config(config).total()


def test_serving_images_come_from_the_chart_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", "s3://autovision")
    monkeypatch.setenv("AUTOVISION_TRAINER_IMAGE", "ghcr.io/autovision/trainer:0.1.0")
    monkeypatch.setenv("AUTOVISION_TRITON_IMAGE", "registry.example/tritonserver:26.06-py3")
    monkeypatch.setenv("AUTOVISION_GATEWAY_IMAGE", "")
    config = OperatorConfig()
    assert config.triton_image == "registry.example/tritonserver:26.06-py3"
    assert config.gateway_image is None
    assert config.serving_gateway_image == "ghcr.io/autovision/trainer:0.1.0"


def test_image_pull_secrets_reach_the_pods() -> None:
    config = make_config(image_pull_secrets=[{"name": "regcred"}])
    for deployment in (deployment_for(config), gateway_for(config)):
        validate(deployment)
        assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


# --- Service, PodDisruptionBudget, HorizontalPodAutoscaler ----------------------------


def test_a_models_service_exposes_kserve_and_metrics() -> None:
    md = make_model_deployment()
    service = sb.build_triton_service(md, "flowers-run")
    validate(service)
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert ports == {"http": (8000, "http"), "grpc": (8001, "grpc"), "metrics": (8002, "metrics")}
    assert service["metadata"]["name"] == "flowers-flowers-run"
    assert service["spec"]["selector"] == sb.model_selector(md, "flowers-run")
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-md"


def test_the_gateways_service_exposes_predict_and_googles_grpc() -> None:
    md = make_model_deployment()
    service = sb.build_gateway_service(md)
    validate(service)
    ports = {port["name"]: (port["port"], port["targetPort"]) for port in service["spec"]["ports"]}
    assert ports == {"predict": (8080, "predict"), "google-grpc": (8081, "google-grpc")}
    protocols = {port["name"]: port["appProtocol"] for port in service["spec"]["ports"]}
    assert protocols["google-grpc"] == "kubernetes.io/h2c"
    assert service["metadata"]["name"] == "flowers"
    assert service["spec"]["selector"] == sb.selector_labels(md, sb.GATEWAY_COMPONENT)


def test_disruption_budget_lets_a_single_node_drain() -> None:
    md = make_model_deployment(nodes=1)
    budget = sb.build_pod_disruption_budget(md, "flowers-run")
    validate(budget)
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"] == sb.model_selector(md, "flowers-run")
    gateway = sb.build_pod_disruption_budget(md, None)
    validate(gateway)
    assert (gateway["metadata"]["name"], gateway["spec"]["selector"]["matchLabels"]) == (
        "flowers",
        sb.selector_labels(md, sb.GATEWAY_COMPONENT),
    )


def test_cpu_autoscaling_uses_a_resource_metric_with_nodes_as_floor() -> None:
    md = make_model_deployment(nodes=3, autoscaling={"minNodes": 2, "maxNodes": 6, "target": "cpu"})
    autoscaler = sb.build_horizontal_pod_autoscaler(md, "flowers-run")
    validate(autoscaler)
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "flowers-flowers-run"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 6)
    assert spec["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
    ]


def test_inflight_autoscaling_uses_tritons_queue_metric() -> None:
    md = make_model_deployment(nodes=1, autoscaling={"minNodes": 2, "maxNodes": 4})
    autoscaler = sb.build_horizontal_pod_autoscaler(md, "flowers-run")
    validate(autoscaler)
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"] == {"name": "nv_inference_pending_request_count"}
    assert autoscaler["spec"]["minReplicas"] == 2


def test_a_floor_above_max_nodes_raises_the_ceiling() -> None:
    md = make_model_deployment(nodes=5, autoscaling={"minNodes": 1, "maxNodes": 3})
    spec = sb.build_horizontal_pod_autoscaler(md, "flowers-run")["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (5, 5)
    assert sb.build_triton_deployment(md, model(), make_config(), None)["spec"]["replicas"] == 5


def test_the_primary_runs_spec_nodes_and_the_others_their_own() -> None:
    """The scale subresource writes spec.nodes: it scales the primary and the models that set no nodes."""
    split = [
        {"trainingJob": "flowers-run", "percent": 80},
        {"trainingJob": "flowers-run-2", "percent": 15, "nodes": 1},
        {"trainingJob": "flowers-run-3", "percent": 5},
    ]
    md = make_model_deployment(modelRef=None, traffic=split, shadow={"trainingJob": "shadow-run", "nodes": 2}, nodes=4)
    replicas = {
        run: sb.build_triton_deployment(md, model(run=run), make_config(), None)["spec"]["replicas"]
        for run in ("flowers-run", "flowers-run-2", "flowers-run-3", "shadow-run")
    }
    assert replicas == {"flowers-run": 4, "flowers-run-2": 1, "flowers-run-3": 4, "shadow-run": 2}
    scaled = make_model_deployment(modelRef=None, traffic=split, nodes=1, autoscaling={"minNodes": 2, "maxNodes": 6})
    assert sb.build_horizontal_pod_autoscaler(scaled, "flowers-run-2")["spec"]["minReplicas"] == 2


def test_no_autoscaler_without_autoscaling() -> None:
    with pytest.raises(ValueError, match=r"no spec\.autoscaling"):
        sb.build_horizontal_pod_autoscaler(make_model_deployment(), "flowers-run")


# --- patches --------------------------------------------------------------------------


def as_stored(desired: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """``desired`` as the API server returns it: defaults and status added, and the spec changes given."""
    stored = {**desired, "metadata": {**desired["metadata"], "uid": "uid-child", "resourceVersion": "7"}}
    template = desired["spec"].get("template")
    if template is not None:
        pod = template["spec"]
        defaulted = [{**c, "terminationMessagePath": "/dev/termination-log"} for c in pod["containers"]]
        template = {**template, "spec": {**pod, "containers": defaulted, "dnsPolicy": "ClusterFirst"}}
        spec = {"template": template, **spec}
    stored["spec"] = {**desired["spec"], **spec}
    stored["status"] = {"replicas": 1}
    return stored


def test_an_unchanged_child_needs_no_patch() -> None:
    desired = deployment_for()
    assert sb.child_patch(desired, as_stored(desired)) is None
    service = sb.build_triton_service(make_model_deployment(), "flowers-run")
    assert sb.child_patch(service, as_stored(service, clusterIP="10.0.0.1")) is None


def test_a_changed_child_gets_its_spec_and_labels_back() -> None:
    desired = deployment_for(nodes=3)
    patch = sb.child_patch(desired, as_stored(desired, replicas=1))
    assert patch == {"metadata": {"labels": desired["metadata"]["labels"]}, "spec": desired["spec"]}


def test_an_autoscaler_owns_the_replicas() -> None:
    desired = deployment_for(nodes=3)
    assert sb.child_patch(desired, as_stored(desired, replicas=7), omit_replicas=True) is None
    new_model = sb.build_triton_deployment(make_model_deployment(nodes=3), model("v2"), make_config(), "s3-credentials")
    patch = sb.child_patch(new_model, as_stored(desired, replicas=7), omit_replicas=True)
    assert patch is not None
    assert "replicas" not in patch["spec"]
    assert patch["spec"]["template"]["metadata"]["annotations"] == {sb.MODEL_VERSION_ANNOTATION: "v2"}


# --- token checks (spec.auth.requireToken) ---------------------------------------------


def test_endpoints_name_googles_addresses_to_copy() -> None:
    endpoints = sb.serving_endpoints(make_model_deployment(), "flowers-run")
    assert endpoints.google_rest == "http://flowers.ml.svc:8080"
    assert endpoints.google_grpc == "flowers.ml.svc:8081"
    assert endpoints.automl_model == "projects/ml/locations/cluster/models/flowers"
    assert endpoints.vertex_endpoint == "projects/ml/locations/cluster/endpoints/flowers"


def test_without_token_checks_the_pods_have_no_identity_and_the_gateway_checks_nothing() -> None:
    md = make_model_deployment()
    assert sb.serving_service_account(md, make_config()) is None
    pod = gateway_for()["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    names = {item["name"] for item in containers(gateway_for())["gateway"]["env"]}
    assert not names & {env.GATEWAY_REQUIRE_TOKEN, env.GATEWAY_DEPLOYMENT_NAME, env.GATEWAY_DEPLOYMENT_NAMESPACE}


def test_token_checks_run_the_gateway_as_the_serving_account_with_its_token() -> None:
    config = make_config().model_copy(update={"serving_service_account": "reviewer"})
    built = gateway_for(config, auth={"requireToken": True})
    validate(built)
    triton = deployment_for(config, auth={"requireToken": True})["spec"]["template"]["spec"]
    assert (triton["automountServiceAccountToken"], "serviceAccountName" in triton) == (False, False)
    pod = built["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "reviewer"
    assert pod["automountServiceAccountToken"] is True
    gateway_env = {item["name"]: item for item in containers(built)["gateway"]["env"]}
    assert gateway_env[env.GATEWAY_REQUIRE_TOKEN]["value"] == "true"
    assert gateway_env[env.GATEWAY_DEPLOYMENT_NAME]["value"] == "flowers"
    namespace = gateway_env[env.GATEWAY_DEPLOYMENT_NAMESPACE]["valueFrom"]["fieldRef"]["fieldPath"]
    assert namespace == "metadata.namespace"
    assert sb.serving_service_account(make_model_deployment(auth={"requireToken": True}), config) == "reviewer"


def test_the_gateway_reads_its_token_settings_as_the_pod_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    gateway_env = containers(gateway_for(auth={"requireToken": True}))["gateway"]["env"]
    for item in gateway_env:
        monkeypatch.setenv(item["name"], item.get("value") or "ml")
    settings = Settings()
    assert (settings.gateway_require_token, settings.gateway_deployment_name) == (True, "flowers")
    assert settings.gateway_deployment_namespace == "ml"


def test_token_checks_leave_only_the_gateway_in_front_of_the_models() -> None:
    md = make_model_deployment(auth={"requireToken": True})
    policy = sb.build_network_policy(md)
    validate(policy)
    assert policy["spec"]["podSelector"]["matchLabels"] == sb.selector_labels(md)
    kserve, metrics = policy["spec"]["ingress"]
    assert kserve["from"] == [{"podSelector": {"matchLabels": sb.selector_labels(md, sb.GATEWAY_COMPONENT)}}]
    assert {port["port"] for port in kserve["ports"]} == {"http", "grpc"}
    assert metrics == {"ports": [{"port": "metrics", "protocol": "TCP"}]}
    endpoints = sb.serving_endpoints(md, "flowers-run")
    assert (endpoints.http, endpoints.grpc) == (None, None)
    assert endpoints.vertex_endpoint == "projects/ml/locations/cluster/endpoints/flowers"


# --- the prediction log (spec.logging) -------------------------------------------------


def logging_gateway(secret: str | None = "s3-credentials", **spec: Any) -> Any:
    md = make_model_deployment(**spec)
    config = make_config(s3_endpoint_url=ENDPOINT)
    return sb.build_gateway_deployment(md, sb.routes(md, {"flowers-run": 100}, None), config, secret)


def test_logging_gives_the_gateway_its_rate_where_to_write_and_the_model_s_credentials() -> None:
    built = logging_gateway(logging={"rate": 0.1, "images": True})
    validate(built)
    gateway = containers(built)["gateway"]
    variables = {item["name"]: item for item in gateway["env"]}
    assert variables[env.GATEWAY_LOG_RATE]["value"] == "0.1"
    assert variables[env.GATEWAY_LOG_IMAGES]["value"] == "true"
    assert variables[env.STORAGE_ROOT]["value"] == "s3://autovision"
    assert variables[env.S3_ENDPOINT_URL]["value"] == ENDPOINT
    assert variables[env.GATEWAY_DEPLOYMENT_NAME]["value"] == "flowers"
    assert variables[env.GATEWAY_DEPLOYMENT_NAMESPACE]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert gateway["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


@pytest.mark.parametrize("spec", [{}, {"logging": {"rate": 0}}], ids=["unset", "rate-0"])
def test_without_logging_the_gateway_gets_no_storage_settings_nor_credentials(spec: dict[str, Any]) -> None:
    gateway = containers(logging_gateway(**spec))["gateway"]
    names = {item["name"] for item in gateway["env"]}
    assert not names & {env.GATEWAY_LOG_RATE, env.STORAGE_ROOT, env.GATEWAY_DEPLOYMENT_NAME}
    assert "envFrom" not in gateway


def test_logging_with_token_checks_names_the_deployment_once_and_the_gateway_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = logging_gateway(logging={"rate": 0.25}, auth={"requireToken": True})
    validate(built)
    names = [item["name"] for item in containers(built)["gateway"]["env"]]
    assert len(names) == len(set(names))
    for item in containers(built)["gateway"]["env"]:
        monkeypatch.setenv(item["name"], item.get("value") or "ml")
    settings = Settings()
    assert (settings.gateway_log_rate, settings.gateway_log_images) == (0.25, False)
    assert (settings.gateway_deployment_namespace, settings.gateway_deployment_name) == ("ml", "flowers")
