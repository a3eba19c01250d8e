"""The Dataset handlers as they run: kopf's KopfRunner against the KMock Kubernetes API emulator."""

from __future__ import annotations

import pytest

from autovision.storage import Storage
from autovision_operator.config import (
    OperatorConfig,
)
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
