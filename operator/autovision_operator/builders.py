"""Pure builders: AutoVision resources in, the Kubernetes objects that run them out.

Nothing here talks to a server, so every child object can be checked field by
field and validated against the Kubernetes schema in tests. Children get
deterministic names and a controller owner reference, which is what makes the
handlers safe to run twice: a second create of the same name is a 409, and
deleting the resource deletes its children.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Final

from autovision.contract import env, exit_codes
from autovision.contract.keys import dataset_storage_name
from autovision.contract.trainer_args import ImportArgs, TrainArgs
from autovision.resources import (
    CustomResource,
    Dataset,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelRef,
    ObjectMeta,
    TrainingJob,
)
from autovision_operator.config import OperatorConfig

MAX_NAME_LENGTH: Final = 63
"""Job names become label values (``job-name``) and pod hostnames: 63 characters at most."""
INDEX_SUFFIX_LENGTH: Final = 4
"""``-<index>`` of an Indexed Job's pod hostnames, for up to 999 nodes."""
CONTAINER: Final = "trainer"
TRAINER_COMMAND: Final = "autovision-trainer"
RUNAS_ID: Final = 65532
"""The non-root user of the AutoVision images."""
GPU_RESOURCE: Final = "nvidia.com/gpu"

# A Job gone from the API loses its pods' logs; three days keeps a Friday night
# failure readable on Monday, and the operator has copied the outcome into the
# resource's status long before.
TTL_SECONDS_AFTER_FINISHED: Final = 3 * 24 * 3600
# An import has no budget; six hours covers hundreds of thousands of images and
# still stops an import that hangs on an unreachable source. The pods of a
# fan-out import their slices side by side, so the same bound covers that many
# times more images (pods left pending by a full cluster count against it too).
IMPORT_DEADLINE_SECONDS: Final = 6 * 3600
# The training deadline is a backstop, not the budget: the trainer itself stops
# searching when the measured budget is spent. activeDeadlineSeconds counts wall
# time from the Job's start, including pending time, retries and the final fit,
# evaluation and export after the search, so it gets twice the budget's wall time
# (which covers resuming after a preemption too) plus a fixed allowance for GPU
# node scale-up and pulling a multi-gigabyte CUDA image.
TRAINING_DEADLINE_MARGIN: Final = 2.0
TRAINING_STARTUP_ALLOWANCE_SECONDS: Final = 30 * 60
# Retries of a pod that failed on its own (OOM, a crash); disruptions such as
# preemption or node loss are not counted (see the pod failure policy). A
# fan-out import retries each slice's pod this often on its own.
IMPORT_BACKOFF_LIMIT: Final = 2
TRAINING_BACKOFF_LIMIT: Final = 3
# PyTorch's DataLoader workers pass batches through /dev/shm; the container
# runtime's 64 MiB default makes them die with "bus error". Memory-backed, so it
# counts towards the pod's memory.
SHM_SIZE: Final = "8Gi"
# Requests only (Burstable QoS): enough for the scheduler to place the pods
# sensibly without capping a data loader that briefly needs more.
IMPORT_REQUESTS: Final = {"cpu": "1", "memory": "2Gi"}
CPU_PER_NODE_UNIT: Final = 4
MEMORY_GI_PER_NODE_UNIT: Final = 16
# Node 0 of a multi-node search serves the study to the other nodes on this
# port (Optuna's gRPC storage proxy); they find it through the headless Service.
STUDY_PORT: Final = 13000
# After the search, rank 0 of the data-parallel final fit (on pod 0) serves the
# c10d TCP store on this port; every rank of every pod meets there.
RENDEZVOUS_PORT: Final = 29500


def bounded_name(name: str, suffix: str = "", limit: int = MAX_NAME_LENGTH) -> str:
    """``name-suffix``, or a shortened, hashed form of it when that exceeds ``limit``.

    The hash of the full name keeps two long names with a common prefix apart,
    and the result is the same on every call: the handlers find what they made.
    """
    full = f"{name}-{suffix}" if suffix else name
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    tail = f"-{digest}-{suffix}" if suffix else f"-{digest}"
    return name[: limit - len(tail)].rstrip("-.") + tail


def import_job_name(dataset_name: str) -> str:
    """The name of a Dataset's import Job."""
    return bounded_name(dataset_name, "import")


def search_job_name(training_job_name: str) -> str:
    """The name of a TrainingJob's search Job (and of its Service): room is left for ``-<index>`` in pod hostnames."""
    return bounded_name(training_job_name, "search", limit=MAX_NAME_LENGTH - INDEX_SUFFIX_LENGTH)


def owner_reference(owner: CustomResource) -> dict[str, Any]:
    """A controller reference to ``owner``: its children are garbage-collected with it."""
    if not owner.metadata.name or not owner.metadata.uid:
        raise ValueError("an owner needs a name and a uid (as read from the API server)")
    return {
        "apiVersion": owner.api_version,
        "kind": type(owner).__name__,
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def labels(component: str, owner: CustomResource) -> dict[str, str]:
    """The app.kubernetes.io labels of every child object."""
    return {
        "app.kubernetes.io/name": "autovision",
        "app.kubernetes.io/instance": bounded_name(str(owner.metadata.name)),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "autovision",
        "app.kubernetes.io/managed-by": "autovision-operator",
    }


def credentials_secret(dataset: Dataset, config: OperatorConfig) -> str | None:
    """The Secret whose AWS_* keys the Job pods of this Dataset (and its trainings) get.

    The Dataset's own storageSecretRef if set; otherwise the operator's storage
    Secret, which pods can only mount in the operator's namespace. Elsewhere the
    pods use ambient credentials (IRSA, workload identity).
    """
    if dataset.spec.storage_secret_ref is not None:
        return dataset.spec.storage_secret_ref.name
    if config.storage_secret and dataset.metadata.namespace == config.namespace:
        return config.storage_secret
    return None


def training_deadline_seconds(budget_milli_node_hours: int, nodes: int) -> int:
    """activeDeadlineSeconds of a search; see TRAINING_DEADLINE_MARGIN for the reasoning."""
    budget_wall_seconds = budget_milli_node_hours * 3.6 / nodes
    return TRAINING_STARTUP_ALLOWANCE_SECONDS + math.ceil(budget_wall_seconds * TRAINING_DEADLINE_MARGIN)


def build_import_job(dataset: Dataset, config: OperatorConfig, pods: int = 1) -> dict[str, Any]:
    """The batch/v1 Job that imports a Dataset with ``autovision-trainer import`` in ``pods`` pods.

    Several pods make an Indexed Job run with ``--slices``: pod k (its
    JOB_COMPLETION_INDEX) validates and packs slice k of the source, and pod 0 then
    waits for the other slices and merges them into the version, completion marker
    last. All pods are created at once (parallelism = completions); as pod 0 keeps
    its place while it waits, a cluster must fit two of them at a time (each asks
    for IMPORT_REQUESTS) for the slices to get through. Each slice's pod is
    retried on its own (backoffLimitPerIndex); a slice out of retries fails the
    whole Job at once (maxFailedIndexes 0): the version needs every slice, and pod 0
    would otherwise wait for it until the deadline.
    """
    spec, split = dataset.spec, dataset.spec.split
    stored_as = dataset_storage_name(str(dataset.metadata.namespace), str(dataset.metadata.name))
    args = ImportArgs(
        name=stored_as,
        source=spec.source,
        task=spec.task,
        train=split.train,
        validation=split.validation,
        test=split.test,
        seed=split.seed,
        slices=pods,
    ).to_args()
    container = _container(args, config, credentials_secret(dataset, config), {"requests": dict(IMPORT_REQUESTS)})
    pod_spec = _pod_spec(container, config, volumes=[_tmp_volume()])
    job_spec: dict[str, Any] = {"activeDeadlineSeconds": IMPORT_DEADLINE_SECONDS}
    if pods > 1:
        job_spec |= {
            "completionMode": "Indexed",
            "completions": pods,
            "parallelism": pods,
            "backoffLimitPerIndex": IMPORT_BACKOFF_LIMIT,
            "maxFailedIndexes": 0,
        }
    else:
        job_spec["backoffLimit"] = IMPORT_BACKOFF_LIMIT
    return _job(dataset, import_job_name(str(dataset.metadata.name)), "import", pod_spec, job_spec)


def build_training_job(
    training_job: TrainingJob, dataset: Dataset, config: OperatorConfig, base_model: str | None = None
) -> dict[str, Any]:
    """The batch/v1 Job that runs a TrainingJob's search on the Dataset's current version.

    ``base_model`` is the finished run ``spec.baseModel`` names, as the trainer's
    ``--base-model`` takes it (a run prefix under the storage root, or a URI).

    Several nodes make an Indexed Job: every pod runs workers of the same search.
    Pod 0 serves the search's study on ``STUDY_PORT``; the others reach it by the
    DNS name the Job's headless Service (``build_search_service``) gives it. After
    the search the same pods run the final fit data-parallel, one rank per GPU
    (``--nproc``), meeting at pod 0's ``RENDEZVOUS_PORT``; NCCL between GPUs,
    gloo on CPU-only nodes.
    """
    if not dataset.status.version:
        raise ValueError(f"Dataset {dataset.metadata.name!r} has no imported version yet")
    spec, resources = training_job.spec, training_job.spec.resources
    meta = training_job.metadata
    name = search_job_name(str(meta.name))
    args = TrainArgs(
        namespace=str(meta.namespace),
        job=str(meta.name),
        uid=str(meta.uid),
        dataset=dataset_storage_name(str(meta.namespace), spec.dataset_ref.name),
        dataset_version=dataset.status.version,
        budget_milli_node_hours=spec.budget_milli_node_hours,
        optimize_for=spec.search_optimize_for,
        target=spec.target,
        early_stopping=spec.early_stopping,
        backbone=[backbone.as_option() for backbone in spec.backbones],
        export_format=spec.export.formats,
        base_model=base_model,
        nodes=resources.nodes,
        coordinator=study_coordinator(name) if resources.nodes > 1 else None,
        nproc=max(1, resources.gpus_per_node),
        rendezvous=pod0_address(name, RENDEZVOUS_PORT) if resources.nodes > 1 else None,
    ).to_args()
    resources_spec = _training_resources(resources.gpus_per_node)
    container = _container(args, config, credentials_secret(dataset, config), resources_spec)
    if resources.nodes > 1:
        container["ports"] = [
            {"name": port_name, "containerPort": port, "protocol": "TCP"} for port_name, port in _SEARCH_PORTS.items()
        ]
    container["volumeMounts"].append({"name": "dshm", "mountPath": "/dev/shm"})
    volumes = [_tmp_volume(), {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}]
    pod_spec = _pod_spec(container, config, volumes=volumes)
    pod_spec |= _placement(training_job, config)
    job_spec: dict[str, Any] = {
        "activeDeadlineSeconds": training_deadline_seconds(spec.budget_milli_node_hours, resources.nodes),
        "backoffLimit": TRAINING_BACKOFF_LIMIT,
    }
    if resources.nodes > 1:
        job_spec |= {"completionMode": "Indexed", "completions": resources.nodes, "parallelism": resources.nodes}
        pod_spec["subdomain"] = name
    return _job(training_job, name, "search", pod_spec, job_spec)


_SEARCH_PORTS: Final = {"study": STUDY_PORT, "rendezvous": RENDEZVOUS_PORT}
"""The ports pod 0 of a multi-node search serves, by name."""


def pod0_address(job_name: str, port: int) -> str:
    """HOST:PORT of pod 0: Indexed Job pods are named ``<job>-<index>`` under the subdomain."""
    return f"{job_name}-0.{job_name}:{port}"


def study_coordinator(job_name: str) -> str:
    """HOST:PORT of pod 0's study server."""
    return pod0_address(job_name, STUDY_PORT)


def build_search_service(training_job: TrainingJob) -> dict[str, Any]:
    """The headless Service of a multi-node search Job: DNS names for its pods, so other nodes find pod 0.

    Addresses are published before the pods are ready (they have no readiness
    probe to pass), and the Service has the Job's name, as the pods' subdomain.
    """
    name = search_job_name(str(training_job.metadata.name))
    service_labels = labels("search", training_job)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": training_job.metadata.namespace,
            "labels": service_labels,
            "ownerReferences": [owner_reference(training_job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": service_labels,
            "ports": [
                {"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
                for port_name, port in _SEARCH_PORTS.items()
            ],
        },
    }


def build_model_deployment(training_job: TrainingJob) -> dict[str, Any]:
    """The ModelDeployment that serves a TrainingJob's model (``spec.deploy``), owned by it."""
    if training_job.spec.deploy is None:
        raise ValueError(f"TrainingJob {training_job.metadata.name!r} has no spec.deploy")
    name = str(training_job.metadata.name)
    deployment = ModelDeployment(
        metadata=ObjectMeta(
            name=name,
            namespace=training_job.metadata.namespace,
            labels=labels("serving", training_job),
            ownerReferences=[owner_reference(training_job)],
        ),
        spec=ModelDeploymentSpec(model_ref=ModelRef(training_job=name), nodes=training_job.spec.deploy.nodes),
    )
    return deployment.model_dump(mode="json", exclude={"status"}, exclude_none=True)


def _job(
    owner: CustomResource, name: str, component: str, pod_spec: dict[str, Any], job_spec: dict[str, Any]
) -> dict[str, Any]:
    """The parts every child Job shares: identity, ownership, failure handling, clean-up."""
    job_labels = labels(component, owner)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": owner.metadata.namespace,
            "labels": job_labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            **job_spec,
            "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
            # A replacement pod starts only once the failed one is gone, so two pods
            # never write the same checkpoints (and the only value allowed here).
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    # Preemption, node drain or loss, eviction: the pod did nothing
                    # wrong; its replacement resumes from the last checkpoint.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    # Bad input fails the same way on every retry: stop at once.
                    {"action": "FailJob", "onExitCodes": _exit_codes(exit_codes.BAD_INPUT)},
                    # Storage or another service was down for longer than the trainer's own
                    # retries, or a rank of the final fit lost: a retry counts against backoffLimit
                    # and resumes from checkpoints.
                    {
                        "action": "Count",
                        "onExitCodes": _exit_codes(exit_codes.TEMPORARY_FAILURE, exit_codes.RANK_LOST),
                    },
                ]
            },
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
        },
    }


def _exit_codes(*codes: int) -> dict[str, Any]:
    """A podFailurePolicy rule's match on the trainer container's exit codes."""
    return {"containerName": CONTAINER, "operator": "In", "values": list(codes)}


def image_policy_env(config: OperatorConfig) -> list[dict[str, str]]:
    """The one image policy as env entries, so import, export and serving in a cluster apply the operator's.

    Import refuses images by it, export writes it (and the decoding instances the
    budget allows) into the Triton repository, the gateway and batch prediction read it.
    """
    return [
        {"name": env.MAX_IMAGE_BYTES, "value": str(config.max_image_bytes)},
        {"name": env.MAX_IMAGE_PIXELS, "value": str(config.max_image_pixels)},
        {"name": env.DECODE_MEMORY_BYTES, "value": str(config.decode_memory_bytes)},
    ]


def _container(
    args: list[str], config: OperatorConfig, secret: str | None, resources: dict[str, Any]
) -> dict[str, Any]:
    """The trainer container: storage settings in env, credentials only by Secret reference."""
    variables = [
        {"name": env.STORAGE_ROOT, "value": config.storage_root},
        # Passed explicitly: the local runtime's default reads more schemes than a cluster allows.
        {"name": env.IMPORT_URI_SCHEMES, "value": ",".join(config.import_uri_schemes)},
        # A read-only root file system: caches and scratch space live in /tmp.
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
        *image_policy_env(config),
    ]
    if config.s3_endpoint_url:
        variables.append({"name": env.S3_ENDPOINT_URL, "value": config.s3_endpoint_url})
    return {
        "name": CONTAINER,
        "image": config.trainer_image,
        "imagePullPolicy": config.trainer_image_pull_policy,
        "command": [TRAINER_COMMAND],
        "args": args,
        "env": variables,
        "resources": resources,
        "securityContext": restricted_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **secret_env_from(secret),
    }


def restricted_security_context(user: int | None = None) -> dict[str, Any]:
    """A container security context of the restricted Pod Security Standard, as ``user`` when given."""
    identity = {"runAsUser": user, "runAsGroup": user} if user is not None else {}
    return {
        "runAsNonRoot": True,
        **identity,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def secret_env_from(secret: str | None) -> dict[str, Any]:
    """A container's ``envFrom`` the storage credentials' Secret (nothing without one)."""
    return {"envFrom": [{"secretRef": {"name": secret}}]} if secret else {}


def _pod_spec(container: dict[str, Any], config: OperatorConfig, volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """A restricted-profile pod running one container once."""
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer talks to storage, never to the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNAS_ID,
            "runAsGroup": RUNAS_ID,
            "fsGroup": RUNAS_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [secret.model_dump(mode="json") for secret in config.image_pull_secrets]
    return pod_spec


def _tmp_volume() -> dict[str, Any]:
    return {"name": "tmp", "emptyDir": {}}


def _training_resources(gpus_per_node: int) -> dict[str, Any]:
    """CPU and memory scale with the GPUs they feed; GPUs are requested as limits."""
    units = max(1, gpus_per_node)
    resources: dict[str, Any] = {
        "requests": {"cpu": str(CPU_PER_NODE_UNIT * units), "memory": f"{MEMORY_GI_PER_NODE_UNIT * units}Gi"}
    }
    if gpus_per_node:
        resources["limits"] = {GPU_RESOURCE: str(gpus_per_node)}
    return resources


def _placement(training_job: TrainingJob, config: OperatorConfig) -> dict[str, Any]:
    """Node selector and tolerations: the spec's, else the chart's GPU defaults for GPU pods.

    CPU-only training gets no GPU defaults: it must not take a GPU node's place.
    """
    resources = training_job.spec.resources
    uses_gpus = resources.gpus_per_node > 0
    node_selector = resources.node_selector or (config.gpu_node_selector if uses_gpus else {})
    tolerations = resources.tolerations or (config.gpu_tolerations if uses_gpus else [])
    placement: dict[str, Any] = {}
    if node_selector:
        placement["nodeSelector"] = dict(node_selector)
    if tolerations:
        placement["tolerations"] = [toleration.model_dump(mode="json", exclude_none=True) for toleration in tolerations]
    return placement
