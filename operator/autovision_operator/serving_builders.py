"""Pure builders of serving: a ModelDeployment in, the Kubernetes objects that serve it out.

A ModelDeployment becomes, all owned by it:

* per served model (each run of ``spec.traffic``, ``spec.modelRef``'s, the shadow,
  a rollout's candidate), named ``model_name(md, run)``: a Deployment of NVIDIA's
  Triton server (KServe v2 over HTTP 8000 and gRPC 8001, Prometheus metrics on
  8002), a Service in front of it, a PodDisruptionBudget letting voluntary
  disruptions take one pod at a time, and, with ``spec.autoscaling``, a
  HorizontalPodAutoscaler: ``nodes`` (``model_nodes``) and autoscaling apply to each model on its own;
* the gateway, named ``serving_name(md)``: a Deployment of the AutoML JSON gateway
  (8080; Google's AutoML v1 and Vertex AI PredictionService over gRPC on 8081),
  which routes each request to one model's Triton Service by the split in its
  ``contract.env.GATEWAY_ROUTES`` (a ``traffic.Routes``), its Service, and its
  PodDisruptionBudget; it is scaled on its own (``kubectl scale deployment``), the
  operator sets its replicas only when it creates it;
* with ``spec.auth.requireToken``, a NetworkPolicy letting only the gateway reach
  the models' KServe ports.

With ``spec.logging`` the gateway logs a sample of its predictions under
``predictions/<namespace>/<name>/`` of the operator's storage root: it gets the log's
rate, its ModelDeployment's name and namespace, the storage root and endpoint, and the
primary model's storage credentials (the Secret its training wrote with).

One shape for every spec, a single ``modelRef`` included (a split of one model at
100 %): one code path, and replacing a model is the same act whether a rollout
gates it or not: the new model's Triton Deployment becomes ready beside the old
one before the gateway sends it anything, then the old one goes. That costs a
second set of Triton pods during the switch, which a rolling update of one
Deployment would not; in exchange no request is ever answered by a
half-loaded model, and a rollback is a routing change, not a redeployment.

Clients of a model's own Triton Service (KServe v2, ``status.endpoints.http`` and
``grpc`` name the primary model's) reach that one model: they bypass the split,
the shadow and the gateway's statistics.

Which model to serve (``uri_model``, ``trained_model``) and which Secret holds
the storage credentials (``serving_secret``) are decided here too, from the
resources the handlers read; what cannot be served yet raises
``reconcile.NotReadyError``. Nothing here talks to a server.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import ValidationError

from autovision.contract import env
from autovision.resources import (
    READY,
    AutoscalingTarget,
    ConditionStatus,
    Dataset,
    Endpoints,
    ModelDeployment,
    TrainingJob,
    find_condition,
)
from autovision.serving.model_config import QUEUED_BATCHES
from autovision.serving.traffic import Backend, Routes, Shadow
from autovision_operator.builders import (
    GPU_RESOURCE,
    RUNAS_ID,
    bounded_name,
    credentials_secret,
    image_policy_env,
    labels,
    owner_reference,
    restricted_security_context,
    secret_env_from,
)
from autovision_operator.config import OperatorConfig
from autovision_operator.reconcile import NotReadyError

COMPONENT: Final = "serving"
GATEWAY_COMPONENT: Final = "gateway"
MODEL_LABEL: Final = "autovision.dev/model"
"""On a model's Triton pods: the run (or URI version) whose model they serve."""
ROUTES_ANNOTATION: Final = "autovision.dev/routes"
"""On the gateway's pod template: a digest of its routing table; a new table rolls the gateway."""
GATEWAY_REPLICAS: Final = 2
"""The gateway's replicas when it is created; later they are left to ``kubectl scale`` or an autoscaler."""
MODEL_VERSION_ANNOTATION: Final = "autovision.dev/model-version"
"""On the pod template: the model version the pods serve. A new version changes the template, which rolls."""
SERVED_MODEL: Final = "autovision"
"""Name of the ensemble in the cluster Triton repository (``autovision.serving.cluster``), as the gateway serves it."""

TRITON_CONTAINER: Final = "triton"
GATEWAY_CONTAINER: Final = "gateway"
TRITON_UID: Final = 1000
"""The non-root ``triton-server`` user of NVIDIA's Triton image."""
GATEWAY_COMMAND: Final = ("python", "-m", "autovision.serving.gateway")


@dataclass(frozen=True)
class Port:
    """A named port of the serving pods, exposed by the Service under the same number."""

    name: str
    number: int
    app_protocol: str


HTTP: Final = Port("http", 8000, "http")
GRPC: Final = Port("grpc", 8001, "kubernetes.io/h2c")
METRICS: Final = Port("metrics", 8002, "http")
PREDICT: Final = Port("predict", 8080, "http")
# Google's AutoML v1 and Vertex AI PredictionService over gRPC, served by the gateway.
GOOGLE_GRPC: Final = Port("google-grpc", 8081, "kubernetes.io/h2c")
# The explainer's own pods (spec.explain), which only the gateway calls.
EXPLAIN: Final = Port("explain", 8090, "http")
EXPLAINER_SUFFIX: Final = "explainer"
GATEWAY_PORTS: Final = (PREDICT, GOOGLE_GRPC)
GOOGLE_LOCATION: Final = "cluster"
"""The location in the Google resource names status lists (any is accepted)."""
TRITON_PORTS: Final = (HTTP, GRPC, METRICS)

# Triton downloads the whole repository from S3 and loads every model before its
# HTTP endpoint answers, so the startup probe allows 15 minutes (90 x 10 s) for a
# slow object store; the liveness probe only takes over once it passed.
STARTUP_PERIOD_SECONDS: Final = 10
STARTUP_FAILURE_THRESHOLD: Final = 90
# Endpoints leave the Service's load balancing a few seconds after a pod starts
# terminating; both containers keep serving that long before they get SIGTERM,
# then Triton finishes in-flight requests within its exit timeout.
PRE_STOP_SECONDS: Final = 10
TRITON_EXIT_TIMEOUT_SECONDS: Final = 30
TERMINATION_GRACE_SECONDS: Final = PRE_STOP_SECONDS + TRITON_EXIT_TIMEOUT_SECONDS + 20
# Longer than the startup probe's allowance: a rollout stuck past it is reported
# (Progressing=False, ProgressDeadlineExceeded), while the old pods keep serving.
PROGRESS_DEADLINE_SECONDS: Final = 20 * 60
REVISION_HISTORY_LIMIT: Final = 3
# CPU: requests only, like the training pods. Triton's CPU decodes and resizes the
# JPEGs in the preprocessing model; the GPU runs the network. Every container has a
# CPU request: the HPA's CPU utilisation is relative to them. Triton's memory request
# and limit are its worst case under the image policy (``TritonMemory``); the gateway's
# memory request is its own (``GatewayMemory``).
TRITON_CPU_REQUEST: Final = "4"
GATEWAY_CPU_REQUEST: Final = "500m"
MIB: Final = 1024**2
# The gateway idle: the interpreter, aiohttp, gRPC and tritonclient (177 MiB measured), rounded up.
GATEWAY_BASE_BYTES: Final = 256 * MIB
# Room for the parameters beside an image's base64 in a request body; the gateway's own
# ``max_request_bytes`` (which the operator cannot import: it needs tritonclient) adds
# the same, and a test keeps the two equal.
REQUEST_PARAMS_BYTES: Final = 64 * 1024
# The cluster layout's batch size (autovision.serving.cluster.DEFAULT_MAX_BATCH_SIZE, which
# the operator cannot import: it needs onnx); a test keeps the two equal.
TRITON_MAX_BATCH_SIZE: Final = 32
# tritonserver, its idle Python stubs and the model: 0.6 GiB measured with a small model
# (docs/benchmarks.md, issue 19), rounded up for larger networks.
TRITON_BASE_BYTES: Final = 1024 * MIB
# What else the Python backend puts in /dev/shm: each preprocessing instance's output
# batch (32 x 3 x 260 x 260 float32 = 26 MB at most) and the stubs' control regions.
SHM_OVERHEAD_BYTES: Final = 256 * MIB
# Copies of its batch's encoded images a decoding stub holds besides /dev/shm: as_numpy's
# deserialised BYTES tensor and a transient one (measured: 2.0 x the batch's bytes).
STUB_BATCH_COPIES: Final = 2
# Triton localises the S3 repository into /tmp before loading it.
TMP_SIZE: Final = "4Gi"
# Scale out at 70 % of the requested CPU: headroom for the new pods' start-up.
CPU_TARGET_UTILIZATION: Final = 70
INFLIGHT_METRIC: Final = "nv_inference_pending_request_count"
# Triton's dynamic batcher forms batches of up to 32 (DEFAULT_MAX_BATCH_SIZE of the
# cluster repository); a queue that stays half a batch deep per pod means requests
# wait for a batch slot, which is when another node pays off.
INFLIGHT_TARGET_PER_NODE: Final = "16"

# What Triton's S3 file system accepts (its path regex in triton-inference-server/core):
# host names and buckets of these characters, object keys of path segments of these.
_TRITON_HOST = re.compile(r"^[0-9a-zA-Z.-]+$")
_TRITON_BUCKET = re.compile(r"^[0-9a-z.-]+$")
_TRITON_KEY = re.compile(r"^[0-9a-zA-Z._-]+(/[0-9a-zA-Z._-]+)*$")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


# --- Triton's memory ----------------------------------------------------------


@dataclass(frozen=True)
class TritonMemory:
    """Triton's worst case, by arithmetic from the image policy: what its pod must hold, term by term.

    K decoding instances (``decode_memory_bytes // (max_pixels x 8)``, as export
    writes them) each execute a batch of up to ``max_batch_size`` encoded images at
    the byte limit: the batch sits in /dev/shm, and twice in the stub's heap (the
    deserialised BYTES tensor and a transient copy: measured with the local
    tritonserver, docs/benchmarks.md); one of its images is decoded at a time. The
    server keeps every request it holds, the K executing batches and the
    ``QUEUED_BATCHES`` queued ones, as received. The server, the idle stubs and the
    model come on top.
    """

    decoded: int
    shared: int
    executing: int
    received: int
    base: int = TRITON_BASE_BYTES

    @classmethod
    def from_config(cls, config: OperatorConfig, max_batch_size: int = TRITON_MAX_BATCH_SIZE) -> TritonMemory:
        """The worst case under the operator's image policy, which it also passes to export and serving."""
        limits = config.image_limits()
        instances = limits.decode_slots(config.decode_memory_bytes)
        batch_bytes = max_batch_size * limits.max_bytes
        return cls(
            decoded=instances * limits.decode_bytes(),
            shared=instances * batch_bytes + SHM_OVERHEAD_BYTES,
            executing=STUB_BATCH_COPIES * instances * batch_bytes,
            received=(instances + QUEUED_BATCHES) * batch_bytes,
        )

    def total(self) -> int:
        """Bytes the Triton container may use at worst, its /dev/shm (memory-backed) included."""
        return self.decoded + self.shared + self.executing + self.received + self.base


@dataclass(frozen=True)
class GatewayMemory:
    """The gateway's worst case, by arithmetic from the body limit and its bounds: its memory request.

    Measured with ``benchmarks/gateway_memory.py`` (docs/benchmarks.md): a request at
    work holds its body as received and parsed, the image decoded from it, its
    dictionary form and the request to Triton (tritonclient serialises the image, then
    joins it into the HTTP body); over gRPC 260 MiB for a 30 MiB image, so 2 bodies + 6
    images. A waiting request holds at most 2 bodies: REST requests wait unread, but
    gRPC hands a handler the whole message, received and parsed, before it waits for a
    slot (83 MiB measured for a 30 MiB image).
    """

    working: int
    waiting: int
    base: int = GATEWAY_BASE_BYTES

    @classmethod
    def from_config(cls, config: OperatorConfig) -> GatewayMemory:
        """The worst case under the image policy and gateway bounds the operator passes to the gateway."""
        image = config.image_limits().max_bytes
        body = request_body_bytes(image)
        return cls(
            working=config.gateway_max_concurrency * (2 * body + 6 * image),
            waiting=config.gateway_max_queue * 2 * body,
        )

    def total(self) -> int:
        """Bytes the gateway container may use at worst."""
        return self.working + self.waiting + self.base


def request_body_bytes(max_image_bytes: int) -> int:
    """The gateway's body limit: the base64 of the largest image plus room for parameters."""
    return (max_image_bytes + 2) // 3 * 4 + REQUEST_PARAMS_BYTES


def mebibytes(size: int) -> str:
    """A Kubernetes quantity of whole MiB, rounded up, so that it never falls short of ``size``."""
    return f"{math.ceil(size / MIB)}Mi"


# --- what to serve ----------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """A model to serve: its run, Triton's repository URL, its version, and the Dataset it was trained on.

    ``run`` names it in routes, labels and status: the TrainingJob's name, or the version of a URI.
    """

    run: str
    repository: str
    version: str
    dataset: str | None = None
    dataset_version: str | None = None
    evaluation: str | None = None


def triton_repository_url(uri: str, endpoint: str | None) -> str:
    """Triton's form of an ``s3://bucket/prefix`` URI, given the S3 endpoint URL (None for AWS).

    Triton takes a custom endpoint inside the URL: ``s3://host:port/bucket/prefix``,
    plain HTTP unless the host is prefixed ``https://``. Its parser needs the port,
    and silently misreads names outside its character sets, so those are errors here.
    """
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{uri}: Triton serving reads model repositories from s3://bucket/prefix URIs")
    bucket, key = parts.netloc, parts.path.strip("/")
    if not _TRITON_BUCKET.match(bucket) or (key and not _TRITON_KEY.match(key)):
        raise ValueError(f"{uri}: Triton accepts buckets of [0-9a-z.-] and keys of [0-9a-zA-Z._-] and /")
    path = f"{bucket}/{key}" if key else bucket
    if not endpoint:
        return f"s3://{path}"
    server = urlsplit(endpoint)
    if server.scheme not in _DEFAULT_PORTS or not server.hostname or server.path.strip("/"):
        raise ValueError(f"{endpoint}: the S3 endpoint must be http(s)://host[:port] for Triton")
    if not _TRITON_HOST.match(server.hostname):
        raise ValueError(f"{endpoint}: Triton accepts S3 endpoint hosts of [0-9a-zA-Z.-] only")
    tls = "https://" if server.scheme == "https" else ""
    return f"s3://{tls}{server.hostname}:{server.port or _DEFAULT_PORTS[server.scheme]}/{path}"


def uri_model(uri: str, endpoint: str | None) -> ServedModel:
    """The model of ``spec.modelRef.uri``, versioned by a digest of the URI."""
    version = "uri-" + hashlib.sha256(uri.encode()).hexdigest()[:12]
    return ServedModel(version, _triton_url(uri, endpoint), version)


def trained_model(training_job: TrainingJob, endpoint: str | None) -> ServedModel:
    """The model of ``spec.modelRef.trainingJob``: its run's Triton repository, versioned by the run (name, uid).

    NotReadyError ModelNotReady until the TrainingJob is Ready with a repository.
    """
    name = training_job.metadata.name
    ready = find_condition(training_job.status.conditions, READY)
    if ready is None or ready.status != ConditionStatus.TRUE:
        detail = f" ({ready.reason}: {ready.message})" if ready else ""
        raise NotReadyError("ModelNotReady", f"TrainingJob {name} has no model yet{detail}")
    # NVIDIA's image serves the cluster layout (ONNX Runtime backend); runs from before
    # it existed only have the local, Python-backend layout, which that image also serves.
    artifacts = training_job.status.artifacts
    repository = artifacts and (artifacts.triton_cluster_repository or artifacts.triton_repository)
    if not repository:
        raise NotReadyError(
            "ModelNotReady", f"TrainingJob {name} is Ready but has no status.artifacts.tritonClusterRepository"
        )
    version = f"{name}-{str(training_job.metadata.uid)[:8]}"
    best = training_job.status.best
    return ServedModel(
        str(name),
        _triton_url(repository, endpoint),
        version,
        training_job.spec.dataset_ref.name,
        evaluation=f"{best.metric}={best.value:.4f}" if best else None,
    )


def _triton_url(uri: str, endpoint: str | None) -> str:
    """Triton's URL of a model repository; NotReadyError UnsupportedModelUri where Triton cannot read it."""
    try:
        return triton_repository_url(uri, endpoint)
    except ValueError as error:
        raise NotReadyError("UnsupportedModelUri", str(error)) from None


def serving_secret(deployment: ModelDeployment, dataset: Dataset | None, config: OperatorConfig) -> str | None:
    """The Secret whose AWS_* keys the serving pods get, to read the model repository.

    A trained model is read with the credentials its training wrote it with (its
    Dataset's); otherwise the operator's storage Secret, mountable only in the
    operator's namespace; elsewhere the pods use ambient credentials.
    """
    if dataset is not None:
        return credentials_secret(dataset, config)
    if config.storage_secret and deployment.metadata.namespace == config.namespace:
        return config.storage_secret
    return None


# --- names, labels, endpoints -----------------------------------------------


def serving_name(deployment: ModelDeployment) -> str:
    """The name of every child: a DNS-1035 label of at most 63 characters (Service names are), from the resource's."""
    name = str(deployment.metadata.name).replace(".", "-")
    if not name[0].isalpha():
        name = f"md-{name}"
    return bounded_name(name)


def model_name(deployment: ModelDeployment, run: str) -> str:
    """The name of one model's children (Triton Deployment, Service, PDB, HPA): a DNS-1035 label."""
    return bounded_name(f"{serving_name(deployment)}-{run.replace('.', '-')}")


def selector_labels(deployment: ModelDeployment, component: str = COMPONENT) -> dict[str, str]:
    """The labels that pick this ModelDeployment's pods of one component (Triton, or the gateway), and only them."""
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")
    all_labels = labels(component, deployment)
    return {key: all_labels[key] for key in keys}


def model_selector(deployment: ModelDeployment, run: str) -> dict[str, str]:
    """The labels that pick one model's Triton pods."""
    return {**selector_labels(deployment), MODEL_LABEL: bounded_name(run)}


def model_url(deployment: ModelDeployment, run: str) -> str:
    """host:port of one model's Triton HTTP endpoint, as the gateway reaches it."""
    return f"{model_name(deployment, run)}.{deployment.metadata.namespace}.svc:{HTTP.number}"


def serving_endpoints(deployment: ModelDeployment, primary: str) -> Endpoints:
    """In-cluster addresses: the gateway's (AutoML JSON predict, Google's), and the primary model's KServe v2.

    The KServe v2 addresses are the primary model's own Triton Service: they bypass the split. Google's
    names take the namespace as project and ``GOOGLE_LOCATION`` as location, both ignored by the
    gateway: they are there to be copied into a client as they are. With token checks only the
    gateway may reach the models, so the KServe addresses are not listed.
    """
    namespace, name = deployment.metadata.namespace, deployment.metadata.name
    host = f"{serving_name(deployment)}.{namespace}.svc"
    model_host = f"{model_name(deployment, primary)}.{namespace}.svc"
    kserve = not deployment.spec.auth.require_token
    return Endpoints(
        http=f"{model_host}:{HTTP.number}" if kserve else None,
        grpc=f"{model_host}:{GRPC.number}" if kserve else None,
        predict=f"http://{host}:{PREDICT.number}/v1/models/{name}:predict",
        google_rest=f"http://{host}:{PREDICT.number}",
        google_grpc=f"{host}:{GOOGLE_GRPC.number}",
        automl_model=f"projects/{namespace}/locations/{GOOGLE_LOCATION}/models/{name}",
        vertex_endpoint=f"projects/{namespace}/locations/{GOOGLE_LOCATION}/endpoints/{name}",
    )


# --- the explainer's address (spec.explain; its children: explain_builders) ---------


def explainer_name(deployment: ModelDeployment) -> str:
    """The name of the explainer's Deployment and Service: the serving name with ``-explainer``."""
    return bounded_name(serving_name(deployment), EXPLAINER_SUFFIX)


def explainer_env(deployment: ModelDeployment) -> list[dict[str, Any]]:
    """The gateway's setting that forwards :explain to the explainer's Service; none without ``spec.explain``."""
    if deployment.spec.explain is None:
        return []
    url = f"http://{explainer_name(deployment)}.{deployment.metadata.namespace}.svc:{EXPLAIN.number}"
    return [{"name": env.GATEWAY_EXPLAINER_URL, "value": url}]


def routes(deployment: ModelDeployment, split: Mapping[str, int], shadow: str | None) -> Routes:
    """The gateway's routing table: each run's Triton Service with its percent, the shadow's, the sticky header."""
    backends = tuple(
        Backend(run=run, triton_url=model_url(deployment, run), percent=percent) for run, percent in split.items()
    )
    copy = Shadow(run=shadow, triton_url=model_url(deployment, shadow)) if shadow else None
    return Routes(backends=backends, shadow=copy, sticky_header=deployment.spec.sticky_header)


def applied_routes(gateway: Mapping[str, Any]) -> Routes | None:
    """The routing table in a gateway Deployment's pod template; None if it has none that parses."""
    containers = gateway["spec"]["template"]["spec"]["containers"]
    settings = {item["name"]: item.get("value") for item in containers[0].get("env") or []}
    try:
        return Routes.model_validate_json(settings.get(env.GATEWAY_ROUTES) or "")
    except ValidationError:
        return None


def routes_digest(table: Routes) -> str:
    """A short digest of a routing table: which gateway pods route by it."""
    return hashlib.sha256(table.model_dump_json().encode()).hexdigest()[:16]


# --- token checks (spec.auth.requireToken) ------------------------------------


def serving_service_account(deployment: ModelDeployment, config: OperatorConfig) -> str | None:
    """The ServiceAccount token-checking serving pods run as (the chart's, with RBAC for the reviews); None without."""
    return config.serving_service_account if deployment.spec.auth.require_token else None


def _token_check_identity(deployment: ModelDeployment, config: OperatorConfig) -> dict[str, Any]:
    """What the pod spec needs for the gateway to ask TokenReview and SubjectAccessReview: an account and its token."""
    account = serving_service_account(deployment, config)
    if account is None:
        return {}
    # The chart's account grants only the two reviews; Triton gets the token mounted too (one pod-wide switch).
    return {"serviceAccountName": account, "automountServiceAccountToken": True}


def _token_check_env(deployment: ModelDeployment) -> list[dict[str, Any]]:
    """The gateway's setting of token checks: on (callers need predict on the ModelDeployment it names)."""
    if not deployment.spec.auth.require_token:
        return []
    return [{"name": env.GATEWAY_REQUIRE_TOKEN, "value": "true"}]


def logs_predictions(deployment: ModelDeployment) -> bool:
    """Whether the gateway logs predictions: ``spec.logging`` with a rate above 0."""
    return deployment.spec.logging is not None and deployment.spec.logging.rate > 0


def _deployment_identity_env(deployment: ModelDeployment) -> list[dict[str, Any]]:
    """The ModelDeployment the gateway serves, for token checks (whose predict permission) and the log (where)."""
    if not (deployment.spec.auth.require_token or logs_predictions(deployment)):
        return []
    return [
        {"name": env.GATEWAY_DEPLOYMENT_NAME, "value": str(deployment.metadata.name)},
        {"name": env.GATEWAY_DEPLOYMENT_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def prediction_log_env(deployment: ModelDeployment, config: OperatorConfig) -> list[dict[str, Any]]:
    """The gateway's settings of ``spec.logging``: the rate, images, and where storage is; none when it logs nothing."""
    logging = deployment.spec.logging
    if logging is None or not logs_predictions(deployment):
        return []
    variables = [
        {"name": env.GATEWAY_LOG_RATE, "value": f"{logging.rate:g}"},
        {"name": env.GATEWAY_LOG_IMAGES, "value": str(logging.images).lower()},
        {"name": env.STORAGE_ROOT, "value": config.storage_root},
    ]
    if config.s3_endpoint_url:
        variables.append({"name": env.S3_ENDPOINT_URL, "value": config.s3_endpoint_url})
    return variables


# --- the children -------------------------------------------------------------


def build_triton_deployment(
    deployment: ModelDeployment, model: ServedModel, config: OperatorConfig, secret: str | None
) -> dict[str, Any]:
    """The apps/v1 Deployment of one model's Triton, one GPU per pod.

    Rollouts (a new configuration) never lower capacity (maxUnavailable 0, one pod
    surged at a time) and only move on once the new pod passes its readiness probe,
    which reports ready only when the whole model repository is loaded.
    """
    selector = model_selector(deployment, model.run)
    memory = TritonMemory.from_config(config)
    pod_spec: dict[str, Any] = {
        # Triton does not talk to the Kubernetes API.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_triton_container(model, config, secret, memory)],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": mebibytes(memory.shared)}},
        ],
        "topologySpreadConstraints": [_spread(selector)],
    }
    if config.gpu_node_selector:
        pod_spec["nodeSelector"] = dict(config.gpu_node_selector)
    if config.gpu_tolerations:
        pod_spec["tolerations"] = [item.model_dump(mode="json", exclude_none=True) for item in config.gpu_tolerations]
    _pull_secrets(pod_spec, config)
    template_metadata = {
        "labels": {**labels(COMPONENT, deployment), MODEL_LABEL: selector[MODEL_LABEL]},
        "annotations": {MODEL_VERSION_ANNOTATION: model.version},
    }
    return _child(
        deployment,
        "apps/v1",
        "Deployment",
        _deployment_spec(
            replica_floor(deployment, model.run), selector, {"metadata": template_metadata, "spec": pod_spec}
        ),
        name=model_name(deployment, model.run),
        extra_labels={MODEL_LABEL: selector[MODEL_LABEL]},
    )


def build_triton_service(deployment: ModelDeployment, run: str) -> dict[str, Any]:
    """The v1 Service of one model's Triton pods: KServe v2 HTTP and gRPC (the gateway's way in), metrics."""
    return _service(deployment, model_name(deployment, run), model_selector(deployment, run), TRITON_PORTS, run)


def build_gateway_deployment(
    deployment: ModelDeployment, table: Routes, config: OperatorConfig, secret: str | None = None
) -> dict[str, Any]:
    """The apps/v1 Deployment of the gateway, routing by ``table``; no GPU.

    A new routing table changes the pod template (its digest is an annotation), so the
    gateway rolls, never below its replicas; each pod counts the requests it routed by its own table.
    With ``spec.logging`` it writes the prediction log with ``secret``'s storage credentials.
    """
    selector = selector_labels(deployment, GATEWAY_COMPONENT)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + 20,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_gateway_container(deployment, table, config, secret)],
        "volumes": [{"name": "gateway-tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "topologySpreadConstraints": [_spread(selector)],
    }
    pod_spec.update(_token_check_identity(deployment, config))
    _pull_secrets(pod_spec, config)
    template = {
        "metadata": {
            "labels": labels(GATEWAY_COMPONENT, deployment),
            "annotations": {ROUTES_ANNOTATION: routes_digest(table)},
        },
        "spec": pod_spec,
    }
    spec = _deployment_spec(GATEWAY_REPLICAS, selector, template)
    return _child(deployment, "apps/v1", "Deployment", spec, component=GATEWAY_COMPONENT)


def build_gateway_service(deployment: ModelDeployment) -> dict[str, Any]:
    """The v1 Service of the gateway: AutoML JSON predict and Google's gRPC APIs, the ModelDeployment's endpoint."""
    selector = selector_labels(deployment, GATEWAY_COMPONENT)
    return _service(deployment, serving_name(deployment), selector, GATEWAY_PORTS, None)


def build_pod_disruption_budget(deployment: ModelDeployment, run: str | None) -> dict[str, Any]:
    """The policy/v1 PodDisruptionBudget of one model's Triton pods (``run``) or of the gateway's (None).

    Drains and upgrades take one pod at a time. maxUnavailable rather than
    minAvailable: with a single node, minAvailable 1 would block every drain;
    maxUnavailable 1 lets it go (with a short outage, which one node cannot
    avoid). Pods that are not ready anyway may always go.
    """
    if run is None:
        name, selector = serving_name(deployment), selector_labels(deployment, GATEWAY_COMPONENT)
    else:
        name, selector = model_name(deployment, run), model_selector(deployment, run)
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": selector}, "unhealthyPodEvictionPolicy": "AlwaysAllow"}
    return _child(deployment, "policy/v1", "PodDisruptionBudget", spec, name=name, extra_labels=_model_label(run))


def build_horizontal_pod_autoscaler(deployment: ModelDeployment, run: str) -> dict[str, Any]:
    """The autoscaling/v2 HorizontalPodAutoscaler of ``spec.autoscaling``, scaling one model's Triton Deployment.

    ``spec.nodes`` is its floor. ``cpu`` scales on CPU utilisation (metrics-server);
    ``inflight`` on Triton's queued requests per pod, the Pods metric
    ``nv_inference_pending_request_count``, which needs a custom metrics adapter
    (e.g. prometheus-adapter summing the metric's series per pod from the
    ``metrics`` port). A floor above maxNodes raises the ceiling to it.
    """
    autoscaling = deployment.spec.autoscaling
    if autoscaling is None:
        raise ValueError(f"ModelDeployment {deployment.metadata.name!r} has no spec.autoscaling")
    floor = replica_floor(deployment, run)
    metric: dict[str, Any]
    if autoscaling.target is AutoscalingTarget.CPU:
        target = {"type": "Utilization", "averageUtilization": CPU_TARGET_UTILIZATION}
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": target}}
    else:
        target = {"type": "AverageValue", "averageValue": INFLIGHT_TARGET_PER_NODE}
        metric = {"type": "Pods", "pods": {"metric": {"name": INFLIGHT_METRIC}, "target": target}}
    name = model_name(deployment, run)
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": floor,
        "maxReplicas": max(autoscaling.max_nodes, floor),
        "metrics": [metric],
    }
    return _child(
        deployment, "autoscaling/v2", "HorizontalPodAutoscaler", spec, name=name, extra_labels=_model_label(run)
    )


def build_network_policy(deployment: ModelDeployment) -> dict[str, Any]:
    """The networking.k8s.io/v1 NetworkPolicy of ``spec.auth.requireToken``: only the gateway reaches KServe.

    The gateway checks tokens; a client going straight to a model's Triton would skip
    the check, so the models' KServe ports admit the gateway's pods only (metrics stay open).
    It takes effect where the cluster's network plugin enforces NetworkPolicies.
    """
    gateway = {"podSelector": {"matchLabels": selector_labels(deployment, GATEWAY_COMPONENT)}}
    spec = {
        "podSelector": {"matchLabels": selector_labels(deployment)},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [gateway], "ports": [{"port": port.name, "protocol": "TCP"} for port in (HTTP, GRPC)]},
            {"ports": [{"port": METRICS.name, "protocol": "TCP"}]},
        ],
    }
    return _child(deployment, "networking.k8s.io/v1", "NetworkPolicy", spec)


def model_nodes(deployment: ModelDeployment, run: str) -> int:
    """The replicas one model asks for: its own ``nodes`` in the split or as the shadow, else ``spec.nodes``.

    The primary model never sets its own (the CRD refuses it), so the scale
    subresource, which writes ``spec.nodes``, scales it.
    """
    spec = deployment.spec
    own = [target.nodes for target in spec.traffic or [] if target.training_job == run]
    if spec.shadow is not None and spec.shadow.training_job == run:
        own.append(spec.shadow.nodes)
    return next((nodes for nodes in own if nodes is not None), spec.nodes)


def replica_floor(deployment: ModelDeployment, run: str) -> int:
    """The replicas one model asks for; with autoscaling, at least the autoscaler's minimum."""
    autoscaling = deployment.spec.autoscaling
    nodes = model_nodes(deployment, run)
    return nodes if autoscaling is None else max(autoscaling.min_nodes, nodes)


def child_patch(
    desired: Mapping[str, Any], existing: Mapping[str, Any], *, omit_replicas: bool = False
) -> dict[str, Any] | None:
    """The merge patch that gives ``existing`` the labels and spec of ``desired``; None when it has them.

    Fields the API server or other controllers added (defaults, status, the
    Deployment controller's annotations) are left alone. ``omit_replicas`` leaves
    ``spec.replicas`` to the HorizontalPodAutoscaler that owns it.
    """
    spec = dict(desired["spec"])
    if omit_replicas:
        spec.pop("replicas", None)
    patch = {"metadata": {"labels": dict(desired["metadata"]["labels"])}, "spec": spec}
    return None if _contains(existing, patch) else patch


def _contains(actual: Any, expected: Any) -> bool:
    """Whether ``actual`` has every field of ``expected`` with the same value; lists match item by item."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and _contains(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, Sequence) and not isinstance(expected, str):
        return (
            isinstance(actual, Sequence)
            and not isinstance(actual, str)
            and len(actual) == len(expected)
            and all(_contains(have, want) for have, want in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


def _child(
    deployment: ModelDeployment,
    api_version: str,
    kind: str,
    spec: dict[str, Any],
    *,
    name: str | None = None,
    component: str = COMPONENT,
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Identity and ownership, shared by every child; ``name`` defaults to ``serving_name``."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name or serving_name(deployment),
            "namespace": deployment.metadata.namespace,
            "labels": {**labels(component, deployment), **(extra_labels or {})},
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": spec,
    }


def _model_label(run: str | None) -> dict[str, str]:
    """The model label of a child of one model; none for the gateway's."""
    return {MODEL_LABEL: bounded_name(run)} if run else {}


def _service(
    deployment: ModelDeployment, name: str, selector: Mapping[str, str], ports: Sequence[Port], run: str | None
) -> dict[str, Any]:
    """A ClusterIP Service exposing ``ports`` of the pods ``selector`` picks."""
    spec = {
        "type": "ClusterIP",
        "selector": dict(selector),
        "ports": [
            {
                "name": port.name,
                "port": port.number,
                "targetPort": port.name,
                "protocol": "TCP",
                "appProtocol": port.app_protocol,
            }
            for port in ports
        ],
    }
    component = COMPONENT if run else GATEWAY_COMPONENT
    return _child(deployment, "v1", "Service", spec, name=name, component=component, extra_labels=_model_label(run))


def _deployment_spec(replicas: int, selector: Mapping[str, str], template: dict[str, Any]) -> dict[str, Any]:
    """A Deployment's spec: rolling updates that never lower capacity."""
    return {
        "replicas": replicas,
        "selector": {"matchLabels": dict(selector)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
        "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
        "template": template,
    }


def _spread(selector: Mapping[str, str]) -> dict[str, Any]:
    """Spread a Deployment's pods over machines, each ReplicaSet on its own, never leaving a pod pending for it."""
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": dict(selector)},
        "matchLabelKeys": ["pod-template-hash"],
    }


def _pull_secrets(pod_spec: dict[str, Any], config: OperatorConfig) -> None:
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [secret.model_dump(mode="json") for secret in config.image_pull_secrets]


def _http_probe(path: str, port: Port, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port.name},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _pre_stop() -> dict[str, Any]:
    return {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}}


def _container_ports(ports: Sequence[Port]) -> list[dict[str, Any]]:
    return [{"name": port.name, "containerPort": port.number, "protocol": "TCP"} for port in ports]


def _triton_container(
    model: ServedModel, config: OperatorConfig, secret: str | None, memory: TritonMemory
) -> dict[str, Any]:
    """Triton on the model repository in S3, readiness-gated on every model being loaded.

    The root file system stays read-only: Triton writes only the localised
    repository (/tmp) and the Python backend's shared memory (/dev/shm). Its
    memory request is its limit, both the worst case: never evicted for using
    what it was sized for, and killed (then restarted) rather than starving the node.
    """
    size = mebibytes(memory.total())
    container: dict[str, Any] = {
        "name": TRITON_CONTAINER,
        "image": config.triton_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={model.repository}",
            f"--http-port={HTTP.number}",
            f"--grpc-port={GRPC.number}",
            f"--metrics-port={METRICS.number}",
            # Not ready until every model loaded; exit (and restart) if one fails to.
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={TRITON_EXIT_TIMEOUT_SECONDS}",
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "ports": _container_ports(TRITON_PORTS),
        "resources": {
            "requests": {"cpu": TRITON_CPU_REQUEST, "memory": size},
            "limits": {"memory": size, GPU_RESOURCE: "1"},
        },
        "startupProbe": _http_probe("/v2/health/live", HTTP, STARTUP_PERIOD_SECONDS, STARTUP_FAILURE_THRESHOLD),
        "livenessProbe": _http_probe("/v2/health/live", HTTP, 10, 6),
        "readinessProbe": _http_probe("/v2/health/ready", HTTP, 5, 3),
        "lifecycle": _pre_stop(),
        "securityContext": restricted_security_context(TRITON_UID),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}],
        **secret_env_from(secret),
    }
    return container


def _gateway_container(
    deployment: ModelDeployment, table: Routes, config: OperatorConfig, secret: str | None
) -> dict[str, Any]:
    """The AutoML JSON gateway, routing to the models' Triton Services by ``table``.

    It gets the operator's image policy, its own bounds (queue, timeouts) and its routes as
    settings; with ``spec.logging`` the log's and the storage credentials' (``secret``).
    """
    logging = logs_predictions(deployment)
    settings = {
        env.GATEWAY_MAX_CONCURRENCY: str(config.gateway_max_concurrency),
        env.GATEWAY_MAX_QUEUE: str(config.gateway_max_queue),
        env.GATEWAY_BODY_TIMEOUT_SECONDS: f"{config.gateway_body_timeout_seconds:g}",
        env.GATEWAY_UPSTREAM_TIMEOUT_SECONDS: f"{config.gateway_upstream_timeout_seconds:g}",
        env.GATEWAY_ROUTES: table.model_dump_json(),
    }
    gateway_env = [
        {"name": "HOME", "value": "/tmp"},
        *image_policy_env(config),
        *({"name": name, "value": value} for name, value in settings.items()),
        *_token_check_env(deployment),
        *_deployment_identity_env(deployment),
        *prediction_log_env(deployment, config),
        *explainer_env(deployment),
    ]
    return {
        "name": GATEWAY_CONTAINER,
        "image": config.serving_gateway_image,
        "imagePullPolicy": config.trainer_image_pull_policy,
        "command": list(GATEWAY_COMMAND),
        "args": [
            "--host=0.0.0.0",
            f"--port={PREDICT.number}",
            f"--model-name={SERVED_MODEL}",
            f"--public-name={deployment.metadata.name}",
            f"--score-threshold={deployment.spec.score_threshold}",
            f"--grpc-port={GOOGLE_GRPC.number}",
        ],
        "env": gateway_env,
        "ports": _container_ports(GATEWAY_PORTS),
        "resources": {
            "requests": {"cpu": GATEWAY_CPU_REQUEST, "memory": mebibytes(GatewayMemory.from_config(config).total())}
        },
        "readinessProbe": _http_probe("/healthz", PREDICT, 5, 3),
        # /healthz fails while no model is ready: restarting the gateway would not help.
        "livenessProbe": {"tcpSocket": {"port": PREDICT.name}, "periodSeconds": 10, "failureThreshold": 6},
        "lifecycle": _pre_stop(),
        "securityContext": restricted_security_context(RUNAS_ID),
        "volumeMounts": [{"name": "gateway-tmp", "mountPath": "/tmp"}],
        **secret_env_from(secret if logging else None),
    }
