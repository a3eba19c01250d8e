"""The Dataset handlers as they run: kopf's KopfRunner against the KMock Kubernetes API emulator."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from autovision.contract.trainer_args import ImportArgs, parse_trainer_args
from autovision.storage import Storage
from autovision_operator.config import (
    OperatorConfig,
)
from autovision_operator.dataset_handlers import source_size
from autovision_operator.import_plan import IMAGES_PER_POD, ZIP_IMAGE_BYTES
from tests.support.kube import (
    DATASET,
    NAMESPACE,
    RUNNING,
    ApiServer,
    Cluster,
    eventually,
    has_condition,
    resource_where,
    running_operator,
)
from tests.support.operator import make_config


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_running_import_shows_its_progress(cluster: Cluster, operator_config: OperatorConfig) -> None:
    async with running_operator(operator_config):
        await cluster.create_secret("s3-credentials")
        await cluster.apply("datasets", DATASET)
        await eventually(lambda: cluster.job("flowers-import"), "the import Job")
        # The trainer's ProgressFile, as the import Job writes it while it runs.
        progress = {"stage": "Decoding and validating images", "completed": 1200, "total": 3870, "detail": ""}
        Storage(operator_config.storage_root).write_json(f"datasets/{NAMESPACE}/flowers/import-progress.json", progress)
        await cluster.set_job_status("flowers-import", RUNNING)
        importing = has_condition("Importing", "JobRunning", "True")
        dataset = await resource_where(
            cluster, "datasets", "flowers", lambda obj: importing(obj) and "1,200 of 3,870" in str(obj["status"])
        )
    (condition,) = [c for c in dataset["status"]["conditions"] if c["type"] == "Importing"]
    assert condition["message"].endswith("is running: decoding and validating images: 1,200 of 3,870")


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(120)
async def test_a_large_source_fans_out_and_a_lost_slice_fails_the_import(
    cluster: Cluster, operator_config: OperatorConfig, tmp_path: Path
) -> None:
    # A zip the size of 200,001 photos (sparse: it takes no disk), which the operator sizes by one stat.
    source = tmp_path / "photos.zip"
    with source.open("wb") as file:
        file.truncate((2 * IMAGES_PER_POD + 1) * ZIP_IMAGE_BYTES)
    spec = {"source": source.as_uri(), "storageSecretRef": {"name": "s3-credentials"}}
    async with running_operator(operator_config):
        await cluster.create_secret("s3-credentials")
        await cluster.apply("datasets", {**DATASET, "metadata": {"name": "photos"}, "spec": spec})
        job = await eventually(lambda: cluster.job("photos-import"), "the import Job")
        await cluster.set_job_status("photos-import", RUNNING | {"active": 3, "ready": 3})
        dataset = await resource_where(cluster, "datasets", "photos", has_condition("Importing", "JobRunning"))
        # The Job controller's verdict once slice 2 exceeded backoffLimitPerIndex (maxFailedIndexes 0).
        lost = {"type": "Failed", "status": "True", "reason": "MaxFailedIndexesExceeded", "message": "failed indexes"}
        await cluster.set_job_status(
            "photos-import", {"active": 0, "failed": 3, "failedIndexes": "2", "conditions": [lost]}
        )
        failed = await resource_where(cluster, "datasets", "photos", has_condition("Failed", "SliceFailed", "True"))
    assert (job["spec"]["completionMode"], job["spec"]["completions"]) == ("Indexed", 3)
    args = parse_trainer_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
    assert isinstance(args, ImportArgs)
    assert args.slices == 3
    assert dataset["status"]["importPods"] == 3
    assert "photos-import (3 pods) is running" in str(dataset["status"]["conditions"])
    (message,) = [c["message"] for c in failed["status"]["conditions"] if c["type"] == "Ready"]
    assert "slice 2 (of 3)" in message
    assert "batch.kubernetes.io/job-completion-index=2" in message


def test_the_operator_sizes_only_sources_an_import_may_read(tmp_path: Path) -> None:
    source = tmp_path / "photos.zip"
    source.write_bytes(b"PK" * 1000)
    log = logging.getLogger(__name__)
    config = make_config(storage_root=tmp_path.as_uri(), import_uri_schemes="s3,file")
    assert source_size(config, source.as_uri(), log) == 2000
    assert source_size(config, (tmp_path / "gone.zip").as_uri(), log) is None
    # A cluster's imports read no file:// source: the operator does not look at its own file system either.
    assert source_size(make_config(storage_root=tmp_path.as_uri()), source.as_uri(), log) is None
