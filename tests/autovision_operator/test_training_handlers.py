"""The TrainingJob handlers as they run: kopf's KopfRunner against the KMock Kubernetes API emulator.

The scenarios play the Job controller and the trainer by patching Job status and
writing the trainer's files into a file:// storage root (see ``tests/support/kube.py``).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from autovision.contract.files import ModelCard
from autovision.contract.keys import model_card_key
from autovision.resources import API_VERSION
from autovision.storage import Storage
from autovision_operator.config import (
    OperatorConfig,
)
from tests.support.kube import (
    COMPLETE,
    DATASET,
    NAMESPACE,
    RUNNING,
    ApiServer,
    Cluster,
    eventually,
    finish_import,
    gone,
    has_condition,
    has_events,
    ready,
    resource_where,
    running_operator,
)

TRAINING_JOB: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": "TrainingJob",
    "metadata": {"name": "flowers-run"},
    "spec": {
        "datasetRef": {"name": "flowers"},
        "budgetMilliNodeHours": 1000,
        "deploy": {"nodes": 2},
        "artifactPolicy": "Delete",
    },
}
BEST = {"trial": 4, "architecture": "efficientnet_lite0", "metric": "validationAccuracy", "value": 0.93}
PROGRESS = {"phase": "Searching", "trials": {"done": 3, "running": 1, "pruned": 1}, "best": BEST}


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_dataset_and_training_job_through_restart(cluster: Cluster, operator_config: OperatorConfig) -> None:
    storage = Storage(operator_config.storage_root)
    async with running_operator(operator_config):
        # Applied before its Dataset exists: the TrainingJob waits, with a reason.
        await cluster.apply("trainingjobs", TRAINING_JOB)
        await resource_where(cluster, "trainingjobs", "flowers-run", ready("DatasetNotFound", "False"))
        await import_dataset(cluster, storage)
        training_job = await search_started(cluster)

    # The operator restarts in the middle of the run and carries on from what it finds.
    async with running_operator(operator_config):
        run = f"runs/{NAMESPACE}/flowers-run/{training_job['metadata']['uid']}"
        await search_progresses(cluster, storage, run)
        await spec_change_is_refused(cluster)
        await search_succeeds(cluster, storage, run, training_job["metadata"]["uid"])
        expected = {"DatasetNotFound", "SecretNotFound", "JobCreated", "Imported", "SpecChangeRefused"}
        expected |= {"Succeeded", "Deployed"}
        await eventually(lambda: has_events(cluster, expected), f"events {expected}")
        assert await cluster.job_names() == {"flowers-import", "flowers-run-search"}  # no duplicates
        await artifacts_go_with_the_training_job(cluster, storage, run)


async def import_dataset(cluster: Cluster, storage: Storage) -> None:
    """A Dataset waits for its Secret, gets an owned import Job, and becomes Ready when it succeeds."""
    await cluster.apply("datasets", DATASET)
    await resource_where(cluster, "datasets", "flowers", ready("SecretNotFound", "False"))
    await cluster.create_secret("s3-credentials")
    job = await eventually(lambda: cluster.job("flowers-import"), "the import Job")
    dataset = await cluster.resource("datasets", "flowers")
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Dataset", dataset["metadata"]["uid"], True)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:3] == ["import", "--name", f"{NAMESPACE}/flowers"]
    await resource_where(cluster, "trainingjobs", "flowers-run", ready("DatasetNotReady"))

    # The trainer wrote its files, the Job controller the Job's status.
    await finish_import(cluster, storage, "flowers")
    dataset = await cluster.resource("datasets", "flowers")
    assert dataset["status"]["version"] == "sha256-feed"
    assert dataset["status"]["counts"]["total"] == 110
    assert dataset["status"]["counts"]["perLabel"]["rose"] == {"train": 44, "validation": 6, "test": 5}
    assert dataset["status"]["observedGeneration"] == 1


async def search_started(cluster: Cluster) -> dict[str, Any]:
    """The TrainingJob's retry finds the Dataset Ready and creates the search Job on its version."""
    search = await eventually(lambda: cluster.job("flowers-run-search"), "the search Job")
    training_job: dict[str, Any] = await cluster.resource("trainingjobs", "flowers-run")
    args = search["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--dataset-version") + 1] == "sha256-feed"
    assert args[args.index("--uid") + 1] == training_job["metadata"]["uid"]
    assert search["metadata"]["ownerReferences"][0]["uid"] == training_job["metadata"]["uid"]
    return training_job


async def search_progresses(cluster: Cluster, storage: Storage, run: str) -> None:
    """progress.json and the running Job show up in status."""
    storage.write_json(f"{run}/progress.json", PROGRESS | {"milliNodeHoursUsed": 300})
    await cluster.set_job_status("flowers-run-search", RUNNING)
    progressing = has_condition("Searching", "Searching", "True")  # set once progress.json is read
    searching = await resource_where(cluster, "trainingjobs", "flowers-run", progressing)
    assert searching["status"]["trials"] == {
        "done": 3,
        "running": 1,
        "pruned": 1,
        "stoppedByBudget": 0,
        "interrupted": 0,
    }
    assert searching["status"]["milliNodeHoursUsed"] == 300


async def spec_change_is_refused(cluster: Cluster) -> None:
    """A spec change mid-run is refused, not a restart; putting it back clears the refusal."""
    await cluster.patch_spec("trainingjobs", "flowers-run", {"budgetMilliNodeHours": 5000})
    refused = has_condition("SpecChangeRefused", "RunInProgress", "True")
    changed = await resource_where(cluster, "trainingjobs", "flowers-run", refused)
    condition = next(c for c in changed["status"]["conditions"] if c["type"] == "SpecChangeRefused")
    assert "spec.budgetMilliNodeHours" in condition["message"]
    assert changed["status"]["observedGeneration"] == 1
    await cluster.patch_spec("trainingjobs", "flowers-run", {"budgetMilliNodeHours": 1000})
    restored = has_condition("SpecChangeRefused", "SpecMatchesRun", "False")
    await resource_where(cluster, "trainingjobs", "flowers-run", restored)


async def search_succeeds(cluster: Cluster, storage: Storage, run: str, uid: str) -> None:
    """The search finishes: Ready with the best trial and artifacts, and spec.deploy is served."""
    artifacts = {"model": storage.uri(f"{run}/model"), "tritonRepository": storage.uri(f"{run}/triton")}
    final = PROGRESS | {"phase": "Succeeded", "milliNodeHoursUsed": 950, "artifacts": artifacts}
    storage.write_json(f"{run}/progress.json", final | {"trials": {"done": 9, "running": 0, "pruned": 2}})
    await cluster.set_job_status("flowers-run-search", COMPLETE)
    done = await resource_where(cluster, "trainingjobs", "flowers-run", ready("Succeeded", "True"))
    assert done["status"]["best"] == BEST
    assert done["status"]["milliNodeHoursUsed"] == 950
    assert done["status"]["artifacts"]["tritonRepository"] == artifacts["tritonRepository"]
    deployment = await eventually(lambda: cluster.resource("modeldeployments", "flowers-run"), "ModelDeployment")
    assert deployment["spec"] == {
        "modelRef": {"trainingJob": "flowers-run"},
        "nodes": 2,
        "scoreThreshold": 0.5,
        "auth": {"requireToken": False},
    }
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == uid


async def artifacts_go_with_the_training_job(cluster: Cluster, storage: Storage, run: str) -> None:
    """artifactPolicy: Delete removes the run's files before the resource goes (a finalizer)."""
    assert storage.exists(f"{run}/progress.json")
    await cluster.delete("trainingjobs", "flowers-run")
    await eventually(lambda: gone(cluster, "trainingjobs", "flowers-run"), "the TrainingJob to be deleted")
    assert not storage.exists(f"{run}/progress.json")


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(180)
async def test_unreachable_storage_is_waited_for_not_failed(
    cluster: Cluster,
    operator_config: OperatorConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    unused_tcp_port: int,
) -> None:
    """A search whose progress.json cannot be read: Ready=False StorageUnavailable and retries, never Failed."""
    caplog.set_level(logging.INFO, logger="botocore")  # its DEBUG log has a traceback for every refused connection
    storage = Storage(operator_config.storage_root)
    async with running_operator(operator_config):
        await cluster.create_secret("s3-credentials")
        await cluster.apply("datasets", DATASET)
        await cluster.apply("trainingjobs", TRAINING_JOB)
        await eventually(lambda: cluster.job("flowers-import"), "the import Job")
        await finish_import(cluster, storage, "flowers")
        training_job = await search_started(cluster)
    run = f"runs/{NAMESPACE}/flowers-run/{training_job['metadata']['uid']}"

    # The operator restarts with its store at a free port nothing listens on; with credentials
    # set, what fails is the connection (s3fs and botocore retry it for seconds first).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "operator")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "operator-secret")
    endpoint = f"http://127.0.0.1:{unused_tcp_port}"
    unreachable = operator_config.model_copy(update={"storage_root": "s3://autovision", "s3_endpoint_url": endpoint})
    async with running_operator(unreachable) as runner:
        await cluster.set_job_status("flowers-run-search", RUNNING)
        waiting = await resource_where(
            cluster, "trainingjobs", "flowers-run", ready("StorageUnavailable", "False"), timeout=60
        )
        await eventually(lambda: has_events(cluster, {"StorageUnavailable"}), "the StorageUnavailable event")
    (condition,) = [c for c in waiting["status"]["conditions"] if c["type"] == "Ready"]
    assert condition["message"].startswith(f"cannot read s3://autovision/{run}/progress.json: ")
    assert endpoint in condition["message"]
    assert "Failed" not in {c["type"] for c in waiting["status"]["conditions"]}
    assert "Timer 'poll_search' failed temporarily: cannot read" in runner.output  # a kopf retry, with backoff
    assert await cluster.job_names() == {"flowers-import", "flowers-run-search"}

    # Storage is back: the run carries on from where it was.
    async with running_operator(operator_config):
        await search_progresses(cluster, storage, run)


# --- the examples, as a user applies them --------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return manifest


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_the_examples_yield_jobs_kubernetes_accepts(cluster: Cluster, operator_config: OperatorConfig) -> None:
    """``kubectl apply -f examples/dataset.yaml -f examples/trainingjob.yaml``: both Jobs, with valid specs."""
    storage = Storage(operator_config.storage_root)
    dataset, training_job = _example("dataset.yaml"), _example("trainingjob.yaml")
    name, run_name = dataset["metadata"]["name"], training_job["metadata"]["name"]
    async with running_operator(operator_config):
        await cluster.create_secret(dataset["spec"]["storageSecretRef"]["name"])
        await cluster.apply("datasets", dataset)
        await cluster.apply("trainingjobs", training_job)
        import_job = await eventually(lambda: cluster.job(f"{name}-import"), "the import Job")
        kubernetes_validate.validate(import_job, kubernetes_validate.latest_version(), True)
        assert (
            _container(import_job)["args"][_container(import_job)["args"].index("--source") + 1]
            == (dataset["spec"]["source"])
        )

        await finish_import(cluster, storage, name)

        search = await eventually(lambda: cluster.job(f"{run_name}-search"), "the search Job")
        kubernetes_validate.validate(search, kubernetes_validate.latest_version(), True)
    container = _container(search)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(training_job["spec"]["resources"]["gpusPerNode"])
    budget = str(training_job["spec"]["budgetMilliNodeHours"])
    assert container["args"][container["args"].index("--budget-milli-node-hours") + 1] == budget
    assert {"secretRef": {"name": dataset["spec"]["storageSecretRef"]["name"]}} in container["envFrom"]
    assert search["spec"]["activeDeadlineSeconds"] > training_job["spec"]["budgetMilliNodeHours"] * 3.6


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_search_over_several_nodes_gets_its_headless_service(
    cluster: Cluster, operator_config: OperatorConfig
) -> None:
    """Three nodes: an Indexed Job and its headless Service; a rank of the final fit lost is one condition."""
    training_job = copy.deepcopy(TRAINING_JOB)
    training_job["spec"]["resources"] = {"nodes": 3}
    storage = Storage(operator_config.storage_root)
    async with running_operator(operator_config):
        await cluster.create_secret("s3-credentials")
        await cluster.apply("datasets", DATASET)
        await cluster.apply("trainingjobs", training_job)
        await eventually(lambda: cluster.job("flowers-import"), "the import Job")
        await finish_import(cluster, storage, "flowers")
        search = await eventually(lambda: cluster.job("flowers-run-search"), "the search Job")
        service = await eventually(lambda: cluster.service("flowers-run-search"), "the search Service")
        assert search["spec"]["completionMode"] == "Indexed"
        assert search["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
        assert service["spec"]["clusterIP"] == "None"
        assert service["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"

        # The trainer on pod 0: a rank did not join the final fit; the Job retries the pods.
        uid = (await cluster.resource("trainingjobs", "flowers-run"))["metadata"]["uid"]
        run = f"runs/{NAMESPACE}/flowers-run/{uid}"
        lost = {"phase": "RankLost", "message": "rank 5 did not join within 600 s", "milliNodeHoursUsed": 700}
        storage.write_json(f"{run}/progress.json", PROGRESS | lost)
        await cluster.set_job_status("flowers-run-search", RUNNING | {"failed": 1})
        retried = await resource_where(cluster, "trainingjobs", "flowers-run", ready("RankLost", "False"))
    (condition,) = [c for c in retried["status"]["conditions"] if c["type"] == "Ready"]
    assert "rank 5 did not join within 600 s" in condition["message"]
    assert "retries from the last checkpoint (1 pod failures so far)" in condition["message"]
    assert "Failed" not in {c["type"] for c in retried["status"]["conditions"]}


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_base_model_is_waited_for_until_it_fits_and_then_handed_to_the_trainer(
    cluster: Cluster, operator_config: OperatorConfig, model_card: ModelCard
) -> None:
    """spec.baseModel: a missing run and one with other labels are Ready=False conditions and no Job; a
    finished run that fits is the search Job's --base-model."""
    storage = Storage(operator_config.storage_root)
    base_run = "runs/elsewhere/served/u0"
    storage.write_json(model_card_key(base_run), model_card.model_copy(update={"labels": ["daisy", "tulip"]}).to_json())
    from_uri = _retraining("retrain", {"uri": storage.uri(base_run)})
    from_job = _retraining("retrain-from-job", {"trainingJob": "served-run"})
    async with running_operator(operator_config):
        await cluster.create_secret("s3-credentials")
        await cluster.apply("datasets", DATASET)
        await eventually(lambda: cluster.job("flowers-import"), "the import Job")
        await finish_import(cluster, storage, "flowers")  # labels daisy and rose
        await cluster.apply("trainingjobs", from_uri)
        await cluster.apply("trainingjobs", from_job)

        waiting = await resource_where(cluster, "trainingjobs", "retrain-from-job", ready("BaseModelNotReady", "False"))
        assert "TrainingJob served-run not found" in _ready_message(waiting)
        refused = await resource_where(cluster, "trainingjobs", "retrain", ready("BaseModelMismatch", "False"))
        assert "the labels differ: the dataset has rose, which the base model lacks" in _ready_message(refused)
        assert await cluster.job_names() == {"flowers-import"}

        storage.write_json(
            model_card_key(base_run), model_card.model_copy(update={"labels": ["daisy", "rose"]}).to_json()
        )
        search = await eventually(lambda: cluster.job("retrain-search"), "the search Job of the fitting base")
    args = _container(search)["args"]
    assert args[args.index("--base-model") + 1] == storage.uri(base_run)
    assert await cluster.job_names() == {"flowers-import", "retrain-search"}


def _retraining(name: str, base_model: dict[str, str]) -> dict[str, Any]:
    training_job = copy.deepcopy(TRAINING_JOB)
    training_job["metadata"]["name"] = name
    training_job["spec"] = {"datasetRef": {"name": "flowers"}, "budgetMilliNodeHours": 100, "baseModel": base_model}
    return training_job


def _ready_message(resource: dict[str, Any]) -> str:
    (condition,) = [c for c in resource["status"]["conditions"] if c["type"] == "Ready"]
    return str(condition["message"])
