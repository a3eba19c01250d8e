"""The operator as it runs, against the KMock Kubernetes API emulator: the harness of the kopf tests.

The scenarios talk to the API server only through the official client and a
kubeconfig, and play the controllers the emulator lacks (Job, Deployment,
autoscaler) by patching objects and their status. KMock only serves the API:
it is told which resources exist and, like a real API server, ``ApiServer``
stamps uid, resourceVersion and generation on the objects it stores. It has no
garbage collector and no scale subresource.

Its fixtures ``cluster`` and ``operator_config`` are in ``tests/autovision_operator/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jsonpatch
import kmock
import yaml
from kopf.testing import KopfRunner
from kubernetes.client import (
    ApiClient,
    AppsV1Api,
    AutoscalingV2Api,
    BatchV1Api,
    CoreV1Api,
    CustomObjectsApi,
    NetworkingV1Api,
    PolicyV1Api,
)
from kubernetes.client.exceptions import ApiException

from autovision.resources import API_VERSION, GROUP, RESOURCE_TYPES, VERSION
from autovision.storage import Storage
from autovision_operator.config import OperatorConfig, kopf_settings
from autovision_operator.handlers import build_registry
from autovision_operator.kube import load_configuration

NAMESPACE = "ml"
WAIT_SECONDS = 15.0
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
# Asked, never stored, by a real API server (the emulator would keep one and refuse the next).
REVIEWS = frozenset({"tokenreviews", "subjectaccessreviews"})
MERGE_PATCH = "application/merge-patch+json"


class ApiServer(kmock.KubernetesEmulator):
    """KMock's emulator plus the metadata a real API server assigns on writes."""

    _versions = itertools.count(1)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.resource.plural in REVIEWS:
            return await kmock.KubernetesScaffold._handle(self, request)
        data = request.data
        if request.resource is not None and isinstance(data, dict):
            metadata = data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                metadata.setdefault("uid", str(uuid.uuid4()))
                metadata.setdefault("creationTimestamp", dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                metadata.setdefault("namespace", request.namespace)
                if "name" not in metadata and "generateName" in metadata:
                    metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
                metadata["generation"] = 1
            elif request.action == kmock.action.UPDATE and "spec" in data and request.subresource is None:
                stored = self.objects[request.resource, request.namespace, request.name]
                metadata["generation"] = stored["metadata"].get("generation", 1) + 1
            if request.action in {kmock.action.CREATE, kmock.action.UPDATE}:
                metadata["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)

    async def _render_error(self, exc: Exception) -> Any:
        """A failed JSON-patch test (kopf's resourceVersion check) is a 422, as from a real API server.

        kopf then retries on its next cycle instead of resending the same patch with backoff.
        """
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=str(exc))
        return await super()._render_error(exc)


def declare_resources(server: Any) -> None:
    """The built-in API (namespaces, events, Jobs, Deployments, CRDs ...) and the AutoVision CRDs."""
    server.resources.load_bundled()
    for model in RESOURCE_TYPES:
        server.resources[f"{GROUP}/{VERSION}/{model.info.plural}"] = kmock.ResourceInfo(
            kind=model.__name__, singular=model.__name__.lower(), namespaced=True, verbs=VERBS, subresources={"status"}
        )


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "operator"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Cluster:
    """The test's hands on the API server: the official client, in a thread (the server shares our loop)."""

    def __init__(self) -> None:
        client = ApiClient(load_configuration())
        self.batch, self.core, self.custom = BatchV1Api(client), CoreV1Api(client), CustomObjectsApi(client)
        self.apps, self.policy, self.autoscaling = AppsV1Api(client), PolicyV1Api(client), AutoscalingV2Api(client)
        self.networking = NetworkingV1Api(client)

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        response = await asyncio.to_thread(method, *args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    async def apply(self, plural: str, obj: dict[str, Any]) -> Any:
        return await self.call(self.custom.create_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural, obj)

    async def resource(self, plural: str, name: str) -> Any:
        return await self.call(self.custom.get_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural, name)

    async def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> Any:
        body = {"spec": spec}
        return await self.call(
            self.custom.patch_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural, name, body
        )

    async def set_status(self, plural: str, name: str, status: dict[str, Any]) -> Any:
        body = {"status": status}
        return await self.call(
            self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, NAMESPACE, plural, name, body
        )

    async def delete(self, plural: str, name: str) -> Any:
        return await self.call(self.custom.delete_namespaced_custom_object, GROUP, VERSION, NAMESPACE, plural, name)

    async def job(self, name: str) -> Any:
        return await self.call(self.batch.read_namespaced_job, name, NAMESPACE)

    async def job_names(self) -> set[str]:
        jobs = await self.call(self.batch.list_namespaced_job, NAMESPACE)
        return {job["metadata"]["name"] for job in jobs["items"]}

    async def set_job_status(self, name: str, status: dict[str, Any]) -> Any:
        return await self.call(self.batch.patch_namespaced_job_status, name, NAMESPACE, {"status": status})

    async def deployment(self, name: str) -> Any:
        return await self.call(self.apps.read_namespaced_deployment, name, NAMESPACE)

    async def patch_deployment(self, name: str, body: dict[str, Any]) -> Any:
        """What the Deployment controller (status) or an autoscaler (spec.replicas) writes."""
        method = (
            self.apps.patch_namespaced_deployment_status if "status" in body else self.apps.patch_namespaced_deployment
        )
        return await self.call(method, name, NAMESPACE, body, _content_type=MERGE_PATCH)

    async def service(self, name: str) -> Any:
        return await self.call(self.core.read_namespaced_service, name, NAMESPACE)

    async def pod_disruption_budget(self, name: str) -> Any:
        return await self.call(self.policy.read_namespaced_pod_disruption_budget, name, NAMESPACE)

    async def autoscaler(self, name: str) -> Any:
        return await self.call(self.autoscaling.read_namespaced_horizontal_pod_autoscaler, name, NAMESPACE)

    async def cron_job(self, name: str) -> Any:
        return await self.call(self.batch.read_namespaced_cron_job, name, NAMESPACE)

    async def network_policy(self, name: str) -> Any:
        return await self.call(self.networking.read_namespaced_network_policy, name, NAMESPACE)

    async def event_reasons(self) -> set[str]:
        events = await self.call(self.core.list_namespaced_event, NAMESPACE)
        return {event["reason"] for event in events["items"]}

    async def create_service_account(self, name: str) -> Any:
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        return await self.call(self.core.create_namespaced_service_account, NAMESPACE, account)

    async def create_secret(self, name: str) -> Any:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"K": "v"}}
        return await self.call(self.core.create_namespaced_secret, NAMESPACE, secret)


async def eventually(probe: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll an async probe until it returns something truthy: what an operator promises."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiException):
            last = await probe()
            if last:
                return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


def has_condition(type: str, reason: str, status: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """A predicate on a resource: its condition of this type has this reason (and status)."""

    def check(obj: dict[str, Any]) -> bool:
        conditions = (obj.get("status") or {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == type), None)
        return found is not None and found["reason"] == reason and (status is None or found["status"] == status)

    check.__doc__ = f"{type}={status or 'any'} ({reason})"
    return check


def ready(reason: str, status: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """A predicate on a resource: its Ready condition has this reason (and status)."""
    return has_condition("Ready", reason, status)


async def resource_where(
    cluster: Cluster, plural: str, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = WAIT_SECONDS
) -> dict[str, Any]:
    """Wait until the resource satisfies ``check``, and return it."""

    async def probe() -> dict[str, Any] | None:
        obj: dict[str, Any] = await cluster.resource(plural, name)
        return obj if check(obj) else None

    found: dict[str, Any] = await eventually(probe, f"{plural}/{name} to match {check.__doc__}", timeout)
    return found


async def has_events(cluster: Cluster, expected: set[str]) -> bool:
    """Whether events with all these reasons were posted."""
    return expected <= await cluster.event_reasons()


async def gone(cluster: Cluster, plural: str, name: str) -> bool:
    """Whether the resource no longer exists."""
    try:
        await cluster.resource(plural, name)
    except ApiException as error:
        return bool(error.status == 404)
    return False


@contextlib.asynccontextmanager
async def running_operator(config: OperatorConfig) -> AsyncIterator[KopfRunner]:
    """The operator exactly as ``main`` builds it, in kopf's test runner thread."""
    runner = KopfRunner(
        ["run", "--all-namespaces", "--standalone", "--verbose"],
        registry=build_registry(config),
        settings=kopf_settings(config),
        timeout=30,
    )
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)
    assert runner.exit_code == 0, runner.output
    assert "Traceback" not in runner.output, runner.output


# --- inputs the Dataset and TrainingJob scenarios share ------------------------------

DATASET = {
    "apiVersion": API_VERSION,
    "kind": "Dataset",
    "metadata": {"name": "flowers"},
    # importPods given: the operator would otherwise ask S3 (here: AWS, without credentials) for the source's size.
    "spec": {"source": "s3://autovision/flowers.zip", "storageSecretRef": {"name": "s3-credentials"}, "importPods": 1},
}
REPORT = {
    "total": 120,
    "kept": 110,
    "rejected": 6,
    "duplicates": 4,
    "conflicts": 0,
    "perLabel": {"daisy": {"train": 44, "validation": 6, "test": 5}, "rose": {"train": 44, "validation": 6, "test": 5}},
}
RUNNING = {"active": 1, "ready": 1, "startTime": "2026-11-23T12:00:00Z"}
COMPLETE = {
    "active": 0,
    "ready": 0,
    "succeeded": 1,
    "startTime": "2026-11-23T12:00:00Z",
    "completionTime": "2026-11-23T12:30:00Z",
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
        {"type": "Complete", "status": "True", "reason": "CompletionsReached"},
    ],
}


async def finish_import(cluster: Cluster, storage: Storage, name: str) -> None:
    """Play the import Job and the trainer: the dataset's files, the Job complete, the Dataset Ready."""
    storage.write_json(f"datasets/{NAMESPACE}/{name}/sha256-feed/report.json", REPORT)
    storage.write_json(f"datasets/{NAMESPACE}/{name}/latest.json", {"version": "sha256-feed"})
    await cluster.set_job_status(f"{name}-import", COMPLETE)
    await resource_where(cluster, "datasets", name, ready("Imported", "True"))
