"""The operator's pure builders: every child object is schema-valid and carries what matters."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from autovision.contract.env import DECODE_MEMORY_BYTES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from autovision.contract.trainer_args import ImportArgs, TrainArgs, parse_trainer_args
from autovision.resources import EdgeFormat, ModelDeployment, OptimizeFor, TrainingJob, TrainingTarget, parse_resource
from autovision_operator import builders
from tests.support.operator import make_config, make_dataset

K8S_VERSION = kubernetes_validate.latest_version()
BACKBONES = [
    {"name": "mine", "architecture": "resnet50", "weightsUri": "s3://models/resnet50.pth"},
    {"name": "small", "architecture": "resnet18", "weightsUri": "s3://models/a=b@c/resnet18.pth"},
]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def make_training_job(name: str = "flowers-run", **spec: Any) -> TrainingJob:
    obj = {
        "apiVersion": "autovision.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": "ml", "uid": "uid-training"},
        "spec": {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 2000, **spec},
    }
    training_job = parse_resource(obj)
    assert isinstance(training_job, TrainingJob)
    return training_job


def validate(obj: dict[str, Any]) -> None:
    """Strict: unknown fields are errors too."""
    kubernetes_validate.validate(obj, K8S_VERSION, True)


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(job)["containers"]
    assert isinstance(only, dict)
    return only


def env(job: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(job)["env"]}


def training_job_for(**spec: Any) -> dict[str, Any]:
    return builders.build_training_job(make_training_job(**spec), make_dataset(version="sha256-abc"), make_config())


# --- import Job ------------------------------------------------------------------


def test_import_job_is_valid_and_runs_the_import_contract() -> None:
    job = builders.build_import_job(make_dataset(), make_config())
    validate(job)
    assert job["metadata"]["name"] == "flowers-import"
    assert job["metadata"]["namespace"] == "ml"
    assert container(job)["command"] == ["autovision-trainer"]
    assert container(job)["args"] == [
        "import", "--name", "ml/flowers", "--source", "s3://bucket/flowers.zip", "--task", "SingleLabel",
        "--train", "70", "--validation", "20", "--test", "10", "--seed", "0", "--slices", "1",
    ]  # fmt: skip
    assert container(job)["image"] == "ghcr.io/autovision/trainer:0.1.0"
    assert env(job)["AUTOVISION_STORAGE_ROOT"] == "s3://autovision"
    assert env(job)["AUTOVISION_IMPORT_URI_SCHEMES"] == "s3,http,https", "the operator's own list, passed on"


def test_import_and_training_jobs_apply_the_operators_image_policy() -> None:
    config = make_config(max_image_bytes=4096, max_image_pixels=1_000_000, decode_memory_bytes=10**9)
    jobs = [
        builders.build_import_job(make_dataset(), config),
        builders.build_training_job(make_training_job(), make_dataset(version="sha256-abc"), config),
    ]
    for job in jobs:
        validate(job)
        assert {name: env(job)[name] for name in (MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, DECODE_MEMORY_BYTES)} == {
            MAX_IMAGE_BYTES: "4096",
            MAX_IMAGE_PIXELS: "1000000",
            DECODE_MEMORY_BYTES: "1000000000",
        }


def test_import_job_takes_credentials_only_by_secret_reference() -> None:
    job = builders.build_import_job(make_dataset(), make_config())
    assert container(job)["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert not any("AWS" in name or "SECRET" in name for name in env(job))


def test_import_job_is_owned_by_its_dataset() -> None:
    job = builders.build_import_job(make_dataset(), make_config())
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "Dataset",
            "name": "flowers",
            "uid": "uid-dataset",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "import"
    assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_import_job_needs_no_gpu_and_has_a_deadline() -> None:
    job = builders.build_import_job(make_dataset(), make_config())
    assert "limits" not in container(job)["resources"]
    assert "nodeSelector" not in pod_spec(job)
    assert job["spec"]["activeDeadlineSeconds"] == builders.IMPORT_DEADLINE_SECONDS
    assert "completionMode" not in job["spec"]


def test_an_import_over_several_pods_is_an_indexed_job_of_slices() -> None:
    single = builders.build_import_job(make_dataset(), make_config())
    job = builders.build_import_job(make_dataset(), make_config(), pods=8)
    validate(job)
    spec = job["spec"]
    assert {key: spec[key] for key in ("completionMode", "completions", "parallelism")} == {
        "completionMode": "Indexed",
        "completions": 8,
        "parallelism": 8,
    }
    # Each slice is retried on its own; one out of retries fails the Job at once (pod 0 would wait for it in vain).
    assert spec["backoffLimitPerIndex"] == builders.IMPORT_BACKOFF_LIMIT
    assert spec["maxFailedIndexes"] == 0
    assert "backoffLimit" not in spec, "the per-index limit bounds the retries"
    assert spec["activeDeadlineSeconds"] == builders.IMPORT_DEADLINE_SECONDS
    assert spec["podFailurePolicy"] == single["spec"]["podFailurePolicy"], "bad input in any slice fails the Job"
    args = parse_trainer_args(container(job)["args"])
    assert isinstance(args, ImportArgs)
    assert args.slices == 8
    assert container(job)["args"][:-2] == container(single)["args"][:-2], "only the number of slices differs"
    assert job["metadata"]["name"] == single["metadata"]["name"], "one Job per Dataset, however many pods"


@pytest.mark.parametrize("build", ["import", "training"])
def test_jobs_fail_fast_on_bad_input_retry_temporary_failures_and_ignore_disruptions(build: str) -> None:
    job = builders.build_import_job(make_dataset(), make_config()) if build == "import" else training_job_for()
    spec = job["spec"]
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    # The trainer's exit codes (autovision.contract.exit_codes) as the Job spells them: bad input; temporary
    # failure and a lost rank of the final fit, both retried from the checkpoints.
    trainer_exits = {"containerName": "trainer", "operator": "In"}
    assert rules[1] == {"action": "FailJob", "onExitCodes": {**trainer_exits, "values": [2]}}
    assert rules[2] == {"action": "Count", "onExitCodes": {**trainer_exits, "values": [75, 76]}}
    assert len(rules) == 3
    assert spec["backoffLimit"] >= 1
    assert spec["ttlSecondsAfterFinished"] > 0
    assert pod_spec(job)["restartPolicy"] == "Never"  # required by podFailurePolicy


@pytest.mark.parametrize("build", ["import", "training"])
def test_job_pods_are_restricted(build: str) -> None:
    job = builders.build_import_job(make_dataset(), make_config()) if build == "import" else training_job_for()
    pod = pod_spec(job)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["automountServiceAccountToken"] is False
    security = container(job)["securityContext"]
    assert security == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    mounts = {mount["mountPath"]: mount["name"] for mount in container(job)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}


def test_equal_dataset_names_in_two_namespaces_are_stored_apart() -> None:
    args = [container(builders.build_import_job(make_dataset(namespace), make_config()))["args"] for namespace in "ab"]
    assert [arg[arg.index("--name") + 1] for arg in args] == ["a/flowers", "b/flowers"]


# --- training Job ----------------------------------------------------------------


def test_training_job_is_valid_and_runs_the_train_contract() -> None:
    job = training_job_for()
    validate(job)
    assert job["metadata"]["name"] == "flowers-run-search"
    assert container(job)["args"] == [
        "train", "--namespace", "ml", "--job", "flowers-run", "--uid", "uid-training",
        "--dataset", "ml/flowers", "--dataset-version", "sha256-abc", "--budget-milli-node-hours", "2000",
        "--optimize-for", "Balanced", "--target", "Cloud", "--early-stopping", "--nodes", "1", "--nproc", "1",
    ]  # fmt: skip
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-training"
    # The training reads the dataset with the Dataset's credentials.
    assert container(job)["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]


@pytest.mark.parametrize(("gpus", "limits"), [(1, {"nvidia.com/gpu": "1"}), (4, {"nvidia.com/gpu": "4"}), (0, None)])
def test_training_job_requests_gpus_per_node(gpus: int, limits: dict[str, str] | None) -> None:
    job = training_job_for(resources={"gpusPerNode": gpus})
    validate(job)
    assert container(job)["resources"].get("limits") == limits
    assert container(job)["resources"]["requests"]["cpu"] == str(4 * max(1, gpus))


def test_gpu_training_uses_the_chart_placement_by_default() -> None:
    job = training_job_for()
    assert pod_spec(job)["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod_spec(job)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_spec_placement_replaces_the_chart_defaults() -> None:
    toleration = {"key": "pool", "operator": "Equal", "value": "a100", "effect": "NoExecute", "tolerationSeconds": 60}
    job = training_job_for(resources={"nodeSelector": {"pool": "a100"}, "tolerations": [toleration]})
    validate(job)
    assert pod_spec(job)["nodeSelector"] == {"pool": "a100"}
    assert pod_spec(job)["tolerations"] == [toleration]


def test_cpu_training_does_not_take_gpu_nodes() -> None:
    job = training_job_for(resources={"gpusPerNode": 0})
    assert "nodeSelector" not in pod_spec(job)
    assert "tolerations" not in pod_spec(job)


def test_training_job_has_memory_backed_shared_memory() -> None:
    job = training_job_for()
    mounts = {mount["mountPath"]: mount["name"] for mount in container(job)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(job)["volumes"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"


def test_training_deadline_is_derived_from_the_budget() -> None:
    # 2000 milli node-hours on one node: 7200 s of budget, doubled, plus 30 min to start.
    assert training_job_for()["spec"]["activeDeadlineSeconds"] == 2 * 7200 + 1800
    # The same budget spread over 4 nodes runs a quarter as long.
    assert builders.training_deadline_seconds(2000, 4) == 2 * 1800 + 1800
    assert builders.training_deadline_seconds(10, 1) == 72 + 1800


def test_one_node_is_a_plain_job() -> None:
    job = training_job_for(resources={"nodes": 1})
    assert "completionMode" not in job["spec"]
    assert "parallelism" not in job["spec"]


def test_several_nodes_make_an_indexed_job() -> None:
    job = training_job_for(resources={"nodes": 3, "gpusPerNode": 2})
    validate(job)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert TrainArgs.parse(container(job)["args"][1:]).nodes == 3
    assert container(job)["resources"]["limits"] == {"nvidia.com/gpu": "2"}


@pytest.mark.parametrize(("gpus", "nproc"), [(8, 8), (0, 1)])
def test_the_final_fit_runs_one_rank_per_gpu_on_every_node(gpus: int, nproc: int) -> None:
    job = training_job_for(resources={"nodes": 4, "gpusPerNode": gpus})
    validate(job)
    args = TrainArgs.parse(container(job)["args"][1:])
    assert (args.nodes, args.nproc) == (4, nproc)
    assert args.rendezvous is not None
    assert args.rendezvous_timeout > 0
    one_node = TrainArgs.parse(container(training_job_for(resources={"nodes": 1, "gpusPerNode": 2}))["args"][1:])
    assert (one_node.nproc, one_node.rendezvous) == (2, None)


def test_the_nodes_of_a_search_find_pod_0_through_a_headless_service() -> None:
    training_job = make_training_job(resources={"nodes": 3})
    job = builders.build_training_job(training_job, make_dataset(version="sha256-abc"), make_config())
    service = builders.build_search_service(training_job)
    validate(service)
    name = job["metadata"]["name"]
    # Indexed Job pods are named <job>-<index> and get <hostname>.<subdomain> DNS names from the Service.
    assert pod_spec(job)["subdomain"] == service["metadata"]["name"] == name
    args = TrainArgs.parse(container(job)["args"][1:])
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    container_ports = {port["name"]: port for port in container(job)["ports"]}
    # The study server during the search, the final fit's c10d rendezvous after it: both on pod 0.
    for port_name, address in (("study", args.coordinator), ("rendezvous", args.rendezvous)):
        assert address is not None
        host, port = address.split(":")
        assert host == f"{name}-0.{name}"
        assert int(port) == service_ports[port_name]["port"] == container_ports[port_name]["containerPort"]
        assert service_ports[port_name]["targetPort"] == port_name
    assert service["metadata"]["ownerReferences"] == job["metadata"]["ownerReferences"]
    one_node = training_job_for(resources={"nodes": 1})
    assert "subdomain" not in pod_spec(one_node)
    assert "AUTOVISION_STUDY_COORDINATOR" not in env(one_node)


def test_training_needs_an_imported_dataset() -> None:
    with pytest.raises(ValueError, match="no imported version"):
        builders.build_training_job(make_training_job(), make_dataset(), make_config())


def test_storage_endpoint_and_pull_secrets_reach_the_pods() -> None:
    config = make_config(s3_endpoint_url="http://seaweedfs.storage:8333", image_pull_secrets=[{"name": "regcred"}])
    job = builders.build_import_job(make_dataset(), config)
    validate(job)
    assert env(job)["AUTOVISION_S3_ENDPOINT_URL"] == "http://seaweedfs.storage:8333"
    assert pod_spec(job)["imagePullSecrets"] == [{"name": "regcred"}]
    assert "AUTOVISION_S3_ENDPOINT_URL" not in env(builders.build_import_job(make_dataset(), make_config()))


# --- credentials ------------------------------------------------------------------


def test_credentials_prefer_the_resource_secret() -> None:
    config = make_config(storage_secret="operator-s3")
    assert builders.credentials_secret(make_dataset(), config) == "s3-credentials"


def test_operator_secret_is_used_only_in_its_own_namespace() -> None:
    config = make_config(storage_secret="operator-s3")
    in_operator_namespace = make_dataset(namespace="autovision-system", secret=None)
    assert builders.credentials_secret(in_operator_namespace, config) == "operator-s3"
    assert builders.credentials_secret(make_dataset(secret=None), config) is None
    job = builders.build_import_job(make_dataset(secret=None), config)
    assert "envFrom" not in container(job)


# --- names and owners -------------------------------------------------------------


def test_long_names_are_shortened_deterministically() -> None:
    long_a, long_b = "a" * 70 + "-one", "a" * 70 + "-two"
    name_a = builders.search_job_name(long_a)
    assert len(name_a) <= 63 - len("-999"), "room for the index in an Indexed Job's pod hostnames"
    assert DNS_LABEL.match(name_a)
    assert name_a.endswith("-search")
    assert name_a == builders.search_job_name(long_a)
    assert name_a != builders.search_job_name(long_b)
    assert builders.import_job_name("flowers") == "flowers-import"


def test_long_names_make_valid_jobs_and_labels() -> None:
    job = builders.build_training_job(
        make_training_job(name="x" * 80 + ".v2"), make_dataset(version="sha256-abc"), make_config()
    )
    validate(job)
    assert len(job["metadata"]["labels"]["app.kubernetes.io/instance"]) <= 63


def test_owner_reference_needs_a_server_assigned_uid() -> None:
    training_job = make_training_job()
    training_job.metadata.uid = None
    with pytest.raises(ValueError, match="uid"):
        builders.owner_reference(training_job)


# --- ModelDeployment --------------------------------------------------------------


def test_model_deployment_serves_the_training_job_and_is_owned_by_it() -> None:
    obj = builders.build_model_deployment(make_training_job(deploy={"nodes": 3}))
    deployment = parse_resource(obj)
    assert isinstance(deployment, ModelDeployment)
    assert obj["metadata"]["name"] == "flowers-run"
    assert obj["metadata"]["namespace"] == "ml"
    assert obj["spec"]["modelRef"] == {"trainingJob": "flowers-run"}
    assert obj["spec"]["nodes"] == 3
    assert "status" not in obj
    (owner,) = obj["metadata"]["ownerReferences"]
    assert owner["kind"] == "TrainingJob"
    assert owner["uid"] == "uid-training"
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True


def test_model_deployment_needs_spec_deploy() -> None:
    with pytest.raises(ValueError, match=r"spec\.deploy"):
        builders.build_model_deployment(make_training_job())


def test_the_trainer_image_accepts_the_arguments_the_operator_builds() -> None:
    """The contract between the two images: the trainer's parser reads the Job's args as built."""
    plain, with_backbones = training_job_for(), training_job_for(backbones=BACKBONES)
    imported = builders.build_import_job(make_dataset(), make_config())
    trained = parse_trainer_args(container(plain)["args"])
    assert isinstance(trained, TrainArgs)
    assert not trained.backbone
    assert (trained.nodes, trained.coordinator) == (1, None)
    import_args = parse_trainer_args(container(imported)["args"])
    assert isinstance(import_args, ImportArgs)
    assert trained.dataset == import_args.name == "ml/flowers", "reads what the import wrote"
    given = TrainArgs.parse(container(with_backbones)["args"][1:]).backbones()
    assert [backbone.model_dump() for backbone in given] == BACKBONES


def test_training_job_passes_the_export_formats_to_the_trainer() -> None:
    job = training_job_for(export={"formats": ["tflite", "coreml"]})
    validate(job)
    trained = parse_trainer_args(container(job)["args"])
    assert isinstance(trained, TrainArgs)
    assert trained.export_format == [EdgeFormat.TFLITE, EdgeFormat.COREML]
    assert "--export-format" not in container(training_job_for())["args"]


@pytest.mark.parametrize(
    ("preset", "optimize_for"),
    [
        ("HigherAccuracy", OptimizeFor.HIGH_ACCURACY),
        ("BestTradeOff", OptimizeFor.BALANCED),
        ("FasterPredictions", OptimizeFor.LOW_LATENCY),
    ],
)
def test_an_edge_training_job_passes_its_target_and_its_presets_trade_off(
    preset: str, optimize_for: OptimizeFor
) -> None:
    job = training_job_for(target="Edge", edgePreset=preset)
    validate(job)
    trained = parse_trainer_args(container(job)["args"])
    assert isinstance(trained, TrainArgs)
    assert (trained.target, trained.optimize_for) == (TrainingTarget.EDGE, optimize_for)


def test_training_job_passes_the_user_backbones_to_the_trainer() -> None:
    job = training_job_for(backbones=BACKBONES)
    validate(job)
    assert container(job)["args"][-6:-2] == [
        "--backbone", "mine=resnet50@s3://models/resnet50.pth",
        "--backbone", "small=resnet18@s3://models/a=b@c/resnet18.pth",
    ]  # fmt: skip
