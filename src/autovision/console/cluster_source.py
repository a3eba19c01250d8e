"""The console's data in a cluster: the custom resources through the Kubernetes API, artifacts from storage.

``ClusterSource`` answers ``ConsoleSource`` for one namespace. It reads and creates
Dataset, TrainingJob and ModelDeployment resources as the console's own service
account (least RBAC from the chart); the ``KubernetesGuard`` has already asked RBAC
whether the caller may do the same. The operator still does all the work: an import
or a run starts by creating its resource, and its state is the resource's status.
What the importer and the trainer stored (reports, indexes, images, progress,
evaluations) is read through ``ArtifactReader`` from the storage the operator uses.
A test image goes to the deployment's AutoML JSON gateway, at the in-cluster address
its status names (refused unless it is a Service of the namespace).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from autovision.auth.kubernetes import KubeClient, KubeError
from autovision.console.artifacts import ArtifactReader
from autovision.console.source import (
    DatasetPhase,
    DatasetRef,
    DatasetSummary,
    DeploymentRef,
    DeploymentSummary,
    EvaluationView,
    ImagePage,
    ImageQuery,
    ImportRequest,
    ImportState,
    NotFoundError,
    RunDetail,
    RunPhase,
    RunRef,
    RunSummary,
    ScoredLabel,
    SourceError,
    TrainingRequest,
)
from autovision.contract.keys import dataset_storage_name
from autovision.resources import (
    API_VERSION,
    GROUP,
    VERSION,
    Backbone,
    Condition,
    ConditionStatus,
    Dataset,
    DatasetStatus,
    ModelDeployment,
    ModelDeploymentStatus,
    ResourceStatus,
    TrainingJob,
    TrainingJobStatus,
)

StatusT = TypeVar("StatusT", bound=ResourceStatus)
PREDICT_TIMEOUT_S: Final = 30.0
FAILED: Final = "Failed"
READY: Final = "Ready"
SEARCHING: Final = "Searching"


def resource_path(namespace: str, plural: str, name: str = "") -> str:
    """The API path of a custom resource collection, or of one object in it."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _holds(status: ResourceStatus, kind: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == kind and c.status is ConditionStatus.TRUE), None)


def _status(obj: dict[str, Any], model: type[StatusT]) -> StatusT:
    try:
        return model.model_validate(obj.get("status") or {})
    except ValidationError:  # a status this console cannot read yet reads as "nothing reported"
        return model()


def dataset_summary(obj: dict[str, Any]) -> DatasetSummary:
    """One Dataset resource as a row of the datasets list: its phase from its conditions."""
    status = _status(obj, DatasetStatus)
    failed, ready = _holds(status, FAILED), _holds(status, READY)
    phase = DatasetPhase.FAILED if failed else DatasetPhase.READY if ready else DatasetPhase.IMPORTING
    counts = status.counts
    return DatasetSummary(
        ref=DatasetRef(namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"]),
        phase=phase,
        version=status.version,
        kept=counts.total if counts else None,
        labels=len(counts.per_label) if counts else None,
        message=failed.message if failed else "",
    )


def run_summary(obj: dict[str, Any]) -> RunSummary:
    """One TrainingJob resource as a row of the runs list."""
    status = _status(obj, TrainingJobStatus)
    failed = _holds(status, FAILED)
    if failed:
        phase = RunPhase.FAILED
    elif _holds(status, READY):
        phase = RunPhase.SUCCEEDED
    else:
        phase = RunPhase.SEARCHING if _holds(status, SEARCHING) else RunPhase.PENDING
    metadata, spec = obj["metadata"], obj.get("spec") or {}
    times = [c.last_transition_time for c in status.conditions]
    return RunSummary(
        ref=RunRef(namespace=metadata["namespace"], job=metadata["name"], uid=metadata["uid"]),
        dataset=DatasetRef(namespace=metadata["namespace"], name=spec["datasetRef"]["name"]),
        phase=phase,
        trials=status.trials,
        best=status.best,
        milli_node_hours_used=status.milli_node_hours_used,
        budget_milli_node_hours=spec.get("budgetMilliNodeHours"),
        updated_at=max(times).isoformat() if times else "",
        message=failed.message if failed else "",
    )


def deployment_summary(obj: dict[str, Any]) -> DeploymentSummary:
    """One ModelDeployment resource with its replicas, readiness and predict URL."""
    status = _status(obj, ModelDeploymentStatus)
    model_ref = (obj.get("spec") or {}).get("modelRef") or {}
    return DeploymentSummary(
        ref=DeploymentRef(namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"]),
        model=model_ref.get("trainingJob") or model_ref.get("uri") or "",
        model_version=status.model_version or "",
        nodes=status.nodes,
        ready_nodes=status.ready_nodes,
        ready=_holds(status, READY) is not None,
        predict_url=(status.endpoints.predict or "") if status.endpoints else "",
    )


def dataset_resource(request: ImportRequest) -> dict[str, Any]:
    """The Dataset resource an import form creates; an uploaded zip has no place in a cluster."""
    if request.upload is not None or not request.source:
        raise SourceError("in a cluster, import from a URI the operator can read (s3://bucket/flowers.zip)")
    return {
        "apiVersion": API_VERSION,
        "kind": Dataset.__name__,
        "metadata": {"name": request.dataset.name},
        "spec": {"source": request.source, "task": request.task.value},
    }


def training_resource(request: TrainingRequest) -> dict[str, Any]:
    """The TrainingJob a training form creates: named after its dataset, with a suffix the API server picks.

    A cluster runs the final fit's processes one per GPU of each node (``spec.resources``), so the form's
    ``nproc`` is refused here; a backbone that does not parse is refused before anything is created.
    """
    if request.nproc is not None:
        raise SourceError("in a cluster the final fit runs one process per GPU of each node: leave processes empty")
    spec: dict[str, Any] = {
        "datasetRef": {"name": request.dataset.name},
        "budgetMilliNodeHours": request.budget_milli_node_hours,
        "optimizeFor": request.optimize_for.value,
        "earlyStopping": request.early_stopping,
    }
    try:
        backbones = [Backbone.parse(text).model_dump(mode="json", by_alias=True) for text in request.backbones]
    except ValueError as error:
        raise SourceError(str(error)) from None
    if backbones:
        spec["backbones"] = backbones
    if request.export_formats:
        spec["export"] = {"formats": [str(f.value) for f in request.export_formats]}
    if request.base_model is not None:
        spec["baseModel"] = {"trainingJob": request.base_model}
    return {
        "apiVersion": API_VERSION,
        "kind": TrainingJob.__name__,
        "metadata": {"generateName": f"{request.dataset.name[:50]}-"},
        "spec": spec,
    }


def top_labels(answer: Any, top_k: int) -> list[ScoredLabel]:
    """The top-k of an AutoML JSON answer (``{"payload": [{displayName, classification: {score}}]}``)."""
    try:
        scored = [
            ScoredLabel(label=entry["displayName"], score=float(entry["classification"]["score"]))
            for entry in answer["payload"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise SourceError(f"the gateway's answer is not AutoML JSON ({type(error).__name__}: {error})") from error
    return sorted(scored, key=lambda item: -item.score)[:top_k]


def checked_predict_url(url: str, namespace: str) -> str:
    """The gateway URL from a status, only when it is an http Service of the namespace: no request leaves it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or not (host.endswith(f".{namespace}.svc") or host.endswith(f".{namespace}.svc.")):
        raise SourceError(f"the deployment's predict address {url!r} is not a Service of namespace {namespace!r}")
    return url


class ClusterSource:
    """ConsoleSource over one namespace's resources and the operator's storage."""

    def __init__(
        self,
        client: KubeClient,
        reader: ArtifactReader,
        namespace: str,
        *,
        gateways: aiohttp.ClientSession | None = None,
    ) -> None:
        self._client = client
        self._reader = reader
        self._namespace = namespace
        self._gateways = gateways or aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the connections to the gateways."""
        await self._gateways.close()

    # --- the API server -------------------------------------------------------------

    def _served(self, namespace: str) -> None:
        if namespace != self._namespace:
            raise NotFoundError(f"this console serves namespace {self._namespace!r}, not {namespace!r}")

    async def _list(self, plural: str) -> list[dict[str, Any]]:
        try:
            answer = await self._client.get(resource_path(self._namespace, plural))
        except KubeError as error:
            raise SourceError(error.message) from error
        items: list[dict[str, Any]] = answer.get("items") or []
        return sorted(items, key=lambda item: item["metadata"].get("creationTimestamp", ""), reverse=True)

    async def _get(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        self._served(namespace)
        try:
            return await self._client.get(resource_path(namespace, plural, name))
        except KubeError as error:
            if error.status == 404:
                raise NotFoundError(f"no {plural} {name!r} in namespace {namespace!r}") from error
            raise SourceError(error.message) from error

    async def _create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return await self._client.post(resource_path(self._namespace, plural), body)
        except KubeError as error:
            if error.status == 409:
                raise SourceError(f"{body['metadata'].get('name')!r} exists already: choose another name") from error
            raise SourceError(error.message) from error

    def _storage_name(self, dataset: DatasetRef) -> str:
        self._served(dataset.namespace)
        return dataset_storage_name(dataset.namespace, dataset.name)

    # --- datasets -----------------------------------------------------------------------

    async def list_datasets(self) -> list[DatasetSummary]:
        """Every Dataset of the namespace, newest first."""
        return [dataset_summary(item) for item in await self._list(Dataset.info.plural)]

    async def dataset_report(self, dataset: DatasetRef, version: str) -> dict[str, Any]:
        """A version's report.json, from storage."""
        return await asyncio.to_thread(self._reader.report, self._storage_name(dataset), version)

    async def images(self, dataset: DatasetRef, version: str, query: ImageQuery) -> ImagePage:
        """One page of a version's images, from its index in storage."""
        return await asyncio.to_thread(self._reader.images, self._storage_name(dataset), version, query)

    async def image_bytes(self, dataset: DatasetRef, version: str, sha256: str) -> bytes:
        """One image's bytes, by (dataset, version, sha256), from its shard in storage."""
        return await asyncio.to_thread(self._reader.image_bytes, self._storage_name(dataset), version, sha256)

    async def start_import(self, request: ImportRequest) -> None:
        """Create the Dataset resource; the operator imports it."""
        self._served(request.dataset.namespace)
        await self._create(Dataset.info.plural, dataset_resource(request))

    async def import_state(self, dataset: DatasetRef) -> ImportState:
        """The Dataset's state: failed or ready from its status, the import's stage from storage meanwhile."""
        summary = dataset_summary(await self._get(Dataset.info.plural, dataset.namespace, dataset.name))
        if summary.phase is DatasetPhase.FAILED:
            return ImportState(phase=summary.phase, message=summary.message)
        if summary.phase is DatasetPhase.READY:
            return ImportState(phase=summary.phase, version=summary.version)
        progress = await asyncio.to_thread(self._reader.import_progress, self._storage_name(dataset))
        if progress is None:
            return ImportState(phase=DatasetPhase.IMPORTING, stage="waiting for the import Job")
        return ImportState(
            phase=DatasetPhase.IMPORTING,
            stage=progress.stage,
            completed=progress.completed,
            total=progress.total,
            detail=progress.detail,
        )

    # --- runs -------------------------------------------------------------------------------

    async def list_runs(self) -> list[RunSummary]:
        """Every TrainingJob of the namespace, newest first."""
        return [run_summary(item) for item in await self._list(TrainingJob.info.plural)]

    async def _run(self, run: RunRef) -> RunSummary:
        summary = run_summary(await self._get(TrainingJob.info.plural, run.namespace, run.job))
        if summary.ref.uid != run.uid:
            raise NotFoundError(f"run {run.uid} of {run.job!r} was replaced by a new TrainingJob of that name")
        return summary

    async def run_detail(self, run: RunRef) -> RunDetail:
        """The TrainingJob's status with the search's trials from storage."""
        return await asyncio.to_thread(self._reader.run_detail, await self._run(run))

    async def evaluation(self, run: RunRef) -> EvaluationView:
        """A finished run's evaluation and saved test predictions, from storage."""
        summary = await self._run(run)
        storage_name = self._storage_name(summary.dataset)
        return await asyncio.to_thread(self._reader.evaluation_view, run, summary.dataset, storage_name)

    async def start_training(self, request: TrainingRequest) -> RunRef:
        """Create the TrainingJob; the operator runs the search."""
        self._served(request.dataset.namespace)
        created = await self._create(TrainingJob.info.plural, training_resource(request))
        metadata = created["metadata"]
        return RunRef(namespace=self._namespace, job=metadata["name"], uid=metadata["uid"])

    # --- deployments --------------------------------------------------------------------------

    async def list_deployments(self) -> list[DeploymentSummary]:
        """Every ModelDeployment of the namespace with its replicas and readiness."""
        return [deployment_summary(item) for item in await self._list(ModelDeployment.info.plural)]

    async def predict(self, deployment: DeploymentRef, image: bytes, top_k: int) -> list[ScoredLabel]:
        """The top-k from the deployment's gateway, asked as the console (the guard checked the caller)."""
        found = deployment_summary(await self._get(ModelDeployment.info.plural, deployment.namespace, deployment.name))
        if not found.predict_url:
            raise SourceError(f"deployment {deployment.name!r} has no predict endpoint yet")
        url = checked_predict_url(found.predict_url, self._namespace)
        body = {
            "payload": {"image": {"imageBytes": base64.b64encode(image).decode()}},
            "params": {"score_threshold": 0},
        }
        try:
            # Deployments with token checks let the console in by its own RBAC (modeldeployments/predict).
            headers = self._client.own_authorization()
            timeout = aiohttp.ClientTimeout(total=PREDICT_TIMEOUT_S)
            async with self._gateways.post(url, json=body, headers=headers, timeout=timeout) as reply:
                answer = await reply.json(content_type=None)
                if reply.status != 200:
                    message = (answer.get("error") or {}).get("message") if isinstance(answer, dict) else None
                    raise SourceError(f"the deployment answered {reply.status}: {message or answer}")
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SourceError(f"the deployment's gateway did not answer ({type(error).__name__}: {error})") from error
        return top_labels(answer, top_k)
