"""ClusterSource against KMock serving the AutoVision API, real storage, and a gateway speaking AutoML JSON.

KMock's emulator (``tests/support/kube.ApiServer``) stores the resources the console
creates and the status the test plays the operator's part in writing; the dataset
is imported for real into file storage, as the operator's import Job would. The
gateway is a small aiohttp app that parses and answers with the real gateway's own
functions (no Triton runs here); a resolver sends the deployment's in-cluster
Service name to it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from autovision.auth.kubernetes import KubeApi, KubeClient
from autovision.console.artifacts import ArtifactReader
from autovision.console.cluster_source import ClusterSource, checked_predict_url, resource_path, training_resource
from autovision.console.source import (
    DatasetPhase,
    DatasetRef,
    DeploymentRef,
    ImageQuery,
    ImportRequest,
    NotFoundError,
    RunPhase,
    RunRef,
    SourceError,
    TrainingRequest,
)
from autovision.contract.keys import dataset_storage_name
from autovision.data.importer import import_dataset
from autovision.resources import API_VERSION, parse_resource
from autovision.serving.gateway import build_predict_response, parse_predict_request
from autovision.storage import Storage
from tests.support.datasets import labelled, write_zip
from tests.support.kube import NAMESPACE, ApiServer, declare_resources

NOW = "2026-12-04T12:00:00Z"
PLAIN_IMAGES = labelled(10)

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=ApiServer)]


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message, "lastTransitionTime": NOW}


class ToLocalhost(AbstractResolver):
    """Every host name is this machine: the deployment's ``*.svc`` name reaches the test's gateway."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


@dataclass
class Setting:
    source: ClusterSource
    api: Any
    storage: Storage
    version: str


@pytest_asyncio.fixture
async def setting(kmock: Any, tmp_path: Path) -> AsyncIterator[Setting]:
    declare_resources(kmock)
    (tmp_path / "token").write_text("console-token")
    storage = Storage(f"file://{tmp_path / 'storage'}")
    imported = import_dataset(
        str(write_zip(tmp_path / "flowers.zip", PLAIN_IMAGES)), dataset_storage_name(NAMESPACE, "flowers"), storage
    )
    client = KubeClient(KubeApi(str(kmock.url).rstrip("/"), tmp_path / "token"))
    gateways = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=ToLocalhost()))
    source = ClusterSource(client, ArtifactReader(storage), NAMESPACE, gateways=gateways)
    yield Setting(source, kmock, storage, imported.version)
    await source.close()
    await client.close()


async def create(api: Any, plural: str, obj: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store a resource (and the status the operator would write) as the API server does."""
    async with aiohttp.ClientSession(str(api.url)) as session:
        async with session.post(resource_path(NAMESPACE, plural), json=obj) as reply:
            created: dict[str, Any] = await reply.json()
            assert reply.status in {200, 201}, created
        if status is not None:
            path = resource_path(NAMESPACE, plural, obj["metadata"]["name"]) + "/status"
            headers = {"Content-Type": "application/merge-patch+json"}
            async with session.patch(path, json={"status": status}, headers=headers) as reply:
                assert reply.status == 200, await reply.text()
    return created


def dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": "s3://b/x.zip"},
    }


async def test_an_imported_dataset_is_listed_paged_and_its_images_served(setting: Setting) -> None:
    ready: dict[str, Any] = {"conditions": [condition("Ready", "True", "Imported")], "version": setting.version}
    ready["counts"] = {"total": 20, "perLabel": {"cat": {"train": 10}, "dog": {"train": 10}}}
    await create(setting.api, "datasets", dataset("flowers"), ready)
    (listed,) = await setting.source.list_datasets()
    assert (listed.ref.name, listed.phase, listed.version, listed.kept, listed.labels) == (
        "flowers",
        DatasetPhase.READY,
        setting.version,
        20,
        2,
    )
    ref = DatasetRef(namespace=NAMESPACE, name="flowers")
    report = await setting.source.dataset_report(ref, setting.version)
    assert set(report["perLabel"]) == {"cat", "dog"}
    page = await setting.source.images(ref, setting.version, ImageQuery(label="cat", limit=2))
    assert (page.total, len(page.tiles)) == (10, 2)
    tile = page.tiles[0]
    assert tile.sha256 is not None
    assert await setting.source.image_bytes(ref, setting.version, tile.sha256) == PLAIN_IMAGES[tile.source]
    state = await setting.source.import_state(ref)
    assert (state.phase, state.version) == (DatasetPhase.READY, setting.version)


async def test_another_namespace_is_not_found_and_reads_nothing(setting: Setting) -> None:
    other = DatasetRef(namespace="kube-system", name="flowers")
    with pytest.raises(NotFoundError, match="serves namespace 'ml'"):
        await setting.source.images(other, setting.version, ImageQuery())
    with pytest.raises(NotFoundError):
        await setting.source.run_detail(RunRef(namespace="kube-system", job="x", uid="u"))


async def test_an_import_creates_a_dataset_and_reports_its_state(setting: Setting) -> None:
    ref = DatasetRef(namespace=NAMESPACE, name="roses")
    await setting.source.start_import(ImportRequest(dataset=ref, source="s3://bucket/roses.zip"))
    stored = setting.api.objects["autovision.dev/v1alpha1/datasets", NAMESPACE, "roses"]
    assert stored["spec"] == {"source": "s3://bucket/roses.zip", "task": "SingleLabel"}
    state = await setting.source.import_state(ref)
    assert (state.phase, state.stage) == (DatasetPhase.IMPORTING, "waiting for the import Job")
    with pytest.raises(SourceError, match="exists already"):
        await setting.source.start_import(ImportRequest(dataset=ref, source="s3://bucket/other.zip"))
    failed = {"conditions": [condition("Failed", "True", "InvalidInput", "not a zip")]}
    async with aiohttp.ClientSession(str(setting.api.url)) as session:
        path = resource_path(NAMESPACE, "datasets", "roses") + "/status"
        headers = {"Content-Type": "application/merge-patch+json"}
        async with session.patch(path, json={"status": failed}, headers=headers) as reply:
            assert reply.status == 200
    state = await setting.source.import_state(ref)
    assert (state.phase, state.message) == (DatasetPhase.FAILED, "not a zip")


async def test_an_upload_cannot_be_imported_in_a_cluster_and_creates_nothing(setting: Setting, tmp_path: Path) -> None:
    ref = DatasetRef(namespace=NAMESPACE, name="uploaded")
    with pytest.raises(SourceError, match="import from a URI"):
        await setting.source.start_import(ImportRequest(dataset=ref, upload=tmp_path / "x.zip"))
    assert await setting.source.list_datasets() == []
    with pytest.raises(NotFoundError):
        await setting.source.import_state(ref)


async def test_training_creates_a_trainingjob_whose_run_is_then_read(setting: Setting) -> None:
    request = TrainingRequest(dataset=DatasetRef(namespace=NAMESPACE, name="flowers"), budget_milli_node_hours=250)
    run = await setting.source.start_training(request)
    assert run.job.startswith("flowers-")
    stored = setting.api.objects["autovision.dev/v1alpha1/trainingjobs", NAMESPACE, run.job]
    assert stored["spec"] == {
        "datasetRef": {"name": "flowers"},
        "budgetMilliNodeHours": 250,
        "optimizeFor": "Balanced",
        "earlyStopping": True,
    }
    assert stored["metadata"]["uid"] == run.uid
    (listed,) = await setting.source.list_runs()
    assert (listed.ref, listed.phase, listed.budget_milli_node_hours) == (run, RunPhase.PENDING, 250)
    detail = await setting.source.run_detail(run)
    assert (detail.summary.phase, detail.trials) == (RunPhase.PENDING, [])
    with pytest.raises(NotFoundError, match="replaced"):
        await setting.source.run_detail(RunRef(namespace=NAMESPACE, job=run.job, uid="an-older-uid"))
    with pytest.raises(NotFoundError, match="no finished model"):
        await setting.source.evaluation(run)


async def gateway_app(seen: list[dict[str, Any]]) -> web.Application:
    """Answers :predict as the real gateway parses and answers it (fixed scores; no model)."""

    async def predict(request: web.Request) -> web.Response:
        seen.append({"authorization": request.headers.get("Authorization"), "path": request.path})
        parsed = parse_predict_request(await request.json(), 1 << 20, 0.5)
        scored = [("cat", 0.7), ("dog", 0.2), ("bird", 0.1)]
        return web.json_response(build_predict_response(scored, parsed.score_threshold))

    app = web.Application()
    app.router.add_post("/v1/models/{name}:predict", predict)
    return app


async def test_a_deployment_is_listed_and_predicts_through_its_gateway(setting: Setting) -> None:
    seen: list[dict[str, Any]] = []
    server = TestServer(await gateway_app(seen))
    await server.start_server()
    try:
        url = f"http://flowers-serving.{NAMESPACE}.svc:{server.port}/v1/models/flowers:predict"
        obj = {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "metadata": {"name": "flowers"},
            "spec": {"modelRef": {"trainingJob": "flowers-run"}, "nodes": 2},
        }
        status = {
            "conditions": [condition("Ready", "True", "Serving")],
            "nodes": 2,
            "readyNodes": 2,
            "modelVersion": "flowers-run",
            "endpoints": {"predict": url},
        }
        await create(setting.api, "modeldeployments", obj, status)
        (listed,) = await setting.source.list_deployments()
        assert (listed.model, listed.ready, listed.ready_nodes, listed.predict_url) == ("flowers-run", True, 2, url)
        top = await setting.source.predict(
            DeploymentRef(namespace=NAMESPACE, name="flowers"), PLAIN_IMAGES["cat/0.png"], 2
        )
        assert [(item.label, item.score) for item in top] == [("cat", 0.7), ("dog", 0.2)]
        assert seen == [{"authorization": "Bearer console-token", "path": "/v1/models/flowers:predict"}]
    finally:
        await server.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://flowers.ml.svc/x",
        "http://flowers.other.svc:8080/x",
        "http://metadata.google.internal/x",
        "http://ml.svc/",
    ],
)
async def test_a_predict_address_outside_the_namespace_is_refused(url: str) -> None:
    with pytest.raises(SourceError, match="not a Service of namespace"):
        checked_predict_url(url, "ml")


def test_a_training_form_with_every_choice_makes_a_valid_training_job() -> None:
    """Backbones and a base exclude each other (a base trains its own architecture): two forms."""
    form = TrainingRequest(
        dataset=DatasetRef(namespace="ml", name="flowers"), budget_milli_node_hours=20, export_formats=["tflite"]
    )
    with_backbone = training_resource(form.model_copy(update={"backbones": ["mine=resnet18@s3://b/w.pth"]}))
    from_base = training_resource(form.model_copy(update={"base_model": "flowers-run"}))
    assert with_backbone["spec"]["backbones"] == [
        {"name": "mine", "architecture": "resnet18", "weightsUri": "s3://b/w.pth"}
    ]
    assert from_base["spec"]["baseModel"] == {"trainingJob": "flowers-run"}
    for job in (with_backbone, from_base):
        assert job["spec"]["export"] == {"formats": ["tflite"]}
        parse_resource({**job, "metadata": {"name": "flowers-x", "namespace": "ml"}})  # the CRD's model accepts it


@pytest.mark.parametrize(
    ("update", "message"),
    [({"nproc": 2}, "one process per GPU"), ({"backbones": ["not a backbone"]}, "NAME=ARCHITECTURE@URI")],
)
def test_a_training_form_a_cluster_cannot_run_creates_nothing(update: dict[str, object], message: str) -> None:
    request = TrainingRequest(dataset=DatasetRef(namespace="ml", name="flowers"), budget_milli_node_hours=20)
    with pytest.raises(SourceError, match=message):
        training_resource(request.model_copy(update=update))
