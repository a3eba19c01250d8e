"""The console's source on the local runtime: local storage, ``autovision`` commands in the background, local gateways.

An import or a training run started from the page is the same command a user
would type (``autovision dataset import``, ``autovision train``), run as a child
process, so it behaves exactly as on the terminal and keeps going if the page
is closed; while the console runs, a child that failed is shown with its one
line of error. Deployments are the ``autovision serve`` gateways the console
was told about (``--deployment NAME=URL``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from autovision.cli.dataset import TaskChoice
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
from autovision.contract import env
from autovision.contract.keys import DATASETS, MODEL_CARD, PROGRESS_FILE, RUNS, run_prefix
from autovision.resources import Task
from autovision.serving.gateway import HEALTH_PATH
from autovision.storage import Storage

# Runs and datasets of the local runtime live in this namespace (as `autovision train` names its runs).
LOCAL_NAMESPACE = "local"
# The public model name `autovision serve` answers :predict for.
SERVED_MODEL = "autovision"
GATEWAY_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 2.0


@dataclass
class Child:
    """A command the console started: its process, its log, and what to remove once it ends."""

    process: subprocess.Popen[bytes]
    log: Path
    budget: int | None = None
    cleanup: list[Path] = field(default_factory=list)

    def failure(self) -> str | None:
        """The command's error line once it exited non-zero; None while it runs or after it succeeded."""
        code = self.process.poll()
        if code is None:
            return None
        for path in self.cleanup:
            path.unlink(missing_ok=True)
        self.cleanup.clear()
        if code == 0:
            return None
        lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return (errors or lines or [f"exited with code {code}"])[-1]

    @property
    def running(self) -> bool:
        """Whether the command is still running."""
        return self.process.poll() is None


class LocalSource:
    """``ConsoleSource`` over local storage; children log to ``work_dir``."""

    def __init__(self, storage: Storage, work_dir: Path, deployments: Mapping[str, str] | None = None) -> None:
        self.storage = storage
        self.reader = ArtifactReader(storage)
        self.work_dir = work_dir
        self.deployments = {name: url.rstrip("/") for name, url in (deployments or {}).items()}
        self.imports: dict[str, Child] = {}
        self.trainings: dict[RunRef, Child] = {}

    # --- datasets ---------------------------------------------------------------

    @staticmethod
    def _local(dataset: DatasetRef) -> str:
        if dataset.namespace != LOCAL_NAMESPACE:
            raise NotFoundError(f"the local console has only namespace {LOCAL_NAMESPACE!r}")
        return dataset.name

    async def list_datasets(self) -> list[DatasetSummary]:
        return await asyncio.to_thread(self._list_datasets)

    def _list_datasets(self) -> list[DatasetSummary]:
        names = {key.split("/")[1] for key in self.storage.list_keys(DATASETS) if key.count("/") == 2}
        summaries = [self._dataset_summary(name) for name in sorted(names | set(self.imports))]
        return [summary for summary in summaries if summary is not None]

    def _dataset_summary(self, name: str) -> DatasetSummary | None:
        ref = DatasetRef(namespace=LOCAL_NAMESPACE, name=name)
        try:
            state = self._import_state(ref)
        except NotFoundError:
            return None
        version = state.version or self.reader.latest_version(name)
        summary = DatasetSummary(ref=ref, phase=state.phase, version=version, message=state.message)
        if version is not None:
            report = self.reader.report(name, version)
            summary.kept, summary.labels = report.get("kept"), len(report.get("perLabel", {}))
        return summary

    async def dataset_report(self, dataset: DatasetRef, version: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.reader.report, self._local(dataset), version)

    async def images(self, dataset: DatasetRef, version: str, query: ImageQuery) -> ImagePage:
        return await asyncio.to_thread(self.reader.images, self._local(dataset), version, query)

    async def image_bytes(self, dataset: DatasetRef, version: str, sha256: str) -> bytes:
        return await asyncio.to_thread(self.reader.image_bytes, self._local(dataset), version, sha256)

    async def start_import(self, request: ImportRequest) -> None:
        name = self._local(request.dataset)
        running = self.imports.get(name)
        if running is not None and running.running:
            raise SourceError(f"dataset {name!r} is already being imported")
        source = str(request.upload) if request.upload is not None else request.source
        if not source:
            raise SourceError("give a zip to upload, or a path or URI to import from")
        task = TaskChoice.MULTI_LABEL if request.task is Task.MULTI_LABEL else TaskChoice.SINGLE_LABEL
        command = ["dataset", "import", source, "--name", name, "--task", task.value, "--json"]
        child = self._start(f"import-{name}", command)
        if request.upload is not None:
            child.cleanup.append(request.upload)
        self.imports[name] = child

    async def import_state(self, dataset: DatasetRef) -> ImportState:
        return await asyncio.to_thread(self._import_state, dataset)

    def _import_state(self, dataset: DatasetRef) -> ImportState:
        name = self._local(dataset)
        child = self.imports.get(name)
        if child is not None:
            failure = child.failure()
            if failure is not None:
                return ImportState(phase=DatasetPhase.FAILED, message=failure)
            if child.running:
                progress = self.reader.import_state(name) if self.reader.import_progress(name) else None
                return progress or ImportState(phase=DatasetPhase.IMPORTING, stage="Starting")
        return self.reader.import_state(name)

    # --- runs -------------------------------------------------------------------

    async def list_runs(self) -> list[RunSummary]:
        return await asyncio.to_thread(self._list_runs)

    def _list_runs(self) -> list[RunSummary]:
        found: set[RunRef] = set(self.trainings)
        for key in self.storage.list_keys(RUNS):
            parts = key.split("/")
            if len(parts) >= 5 and (parts[4] == PROGRESS_FILE or parts[4:] == ["model", MODEL_CARD]):
                try:
                    found.add(RunRef(namespace=parts[1], job=parts[2], uid=parts[3]))
                except ValueError:  # not a run the console can name (written by hand)
                    continue
        summaries = [self._run_summary(ref) for ref in found]
        return sorted(summaries, key=lambda summary: summary.updated_at, reverse=True)

    def _run_summary(self, ref: RunRef) -> RunSummary:
        prefix = run_prefix(ref.namespace, ref.job, ref.uid)
        progress, card = self.reader.progress(prefix), self.reader.card(prefix)
        child = self.trainings.get(ref)
        phase = self.reader.phase(progress, card)
        failure = None if child is None else child.failure()
        summary = RunSummary(
            ref=ref,
            dataset=DatasetRef(namespace=LOCAL_NAMESPACE, name=ref.job),
            phase=RunPhase.FAILED if failure else phase,
            message=failure or "",
            budget_milli_node_hours=None if child is None else child.budget,
        )
        if progress is not None:
            summary.trials, summary.best = progress.trials, progress.best
            summary.milli_node_hours_used, summary.updated_at = progress.milli_node_hours_used, progress.updated_at
            summary.message = summary.message or progress.message or ""
        if card is not None:
            summary.budget_milli_node_hours = card.budget_milli_node_hours
            summary.milli_node_hours_used, summary.updated_at = card.milli_node_hours_used, card.created_at
        return summary

    async def run_detail(self, run: RunRef) -> RunDetail:
        return await asyncio.to_thread(self._run_detail, run)

    def _run_detail(self, run: RunRef) -> RunDetail:
        summary = self._run_summary(run)
        if summary.phase is RunPhase.PENDING and run not in self.trainings:
            raise NotFoundError(f"no run {run.namespace}/{run.job}/{run.uid}")
        return self.reader.run_detail(summary)

    async def evaluation(self, run: RunRef) -> EvaluationView:
        dataset = DatasetRef(namespace=LOCAL_NAMESPACE, name=run.job)
        return await asyncio.to_thread(self.reader.evaluation_view, run, dataset, run.job)

    async def start_training(self, request: TrainingRequest) -> RunRef:
        return await asyncio.to_thread(self._start_training, request)

    def _start_training(self, request: TrainingRequest) -> RunRef:
        name = self._local(request.dataset)
        version = self.reader.latest_version(name)
        if version is None:
            raise SourceError(f"dataset {name!r} has no imported version: import it first")
        # torch comes with these: only once a run is really started
        from autovision.pipeline import train_run_uid
        from autovision.search.base_model import BaseModelError, find_base_model

        try:
            base = None if request.base_model is None else find_base_model(request.base_model, self.storage.settings)
        except BaseModelError as error:
            raise SourceError(str(error)) from None
        uid = train_run_uid(
            version,
            request.budget_milli_node_hours,
            request.optimize_for.value,
            early_stopping=request.early_stopping,
            seed=request.seed,
            backbones=request.backbones,
            base_uri=None if base is None else base.uri,
        )
        ref = RunRef(namespace=LOCAL_NAMESPACE, job=name, uid=uid)
        running = self.trainings.get(ref)
        if running is not None and running.running:
            raise SourceError(f"run {uid} of {name!r} is already running")
        command = [
            "train",
            f"--dataset={name}",
            f"--budget-milli-node-hours={request.budget_milli_node_hours}",
            f"--optimize-for={request.optimize_for.value}",
            "--early-stopping" if request.early_stopping else "--no-early-stopping",
            f"--seed={request.seed}",
            "--json",
            *train_options(request),
        ]
        child = self._start(f"train-{name}-{uid}", command)
        child.budget = request.budget_milli_node_hours
        self.trainings[ref] = child
        return ref

    def _start(self, log_name: str, arguments: list[str]) -> Child:
        """``python -m autovision ARGUMENTS`` in the background, on this console's storage."""
        logs = self.work_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{log_name}.log"
        environment = os.environ | {env.STORAGE_ROOT: self.storage.uri("")}
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "autovision", *arguments],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,
            )
        return Child(process=process, log=log)

    def stop_children(self) -> None:
        """End what this console started and still runs (on shutdown): an import or a run resumes when restarted."""
        for child in [*self.imports.values(), *self.trainings.values()]:
            if child.running:
                child.process.terminate()
        for child in [*self.imports.values(), *self.trainings.values()]:
            try:
                child.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.process.kill()

    # --- deployments ------------------------------------------------------------

    def _gateway(self, deployment: DeploymentRef) -> str:
        url = self.deployments.get(deployment.name)
        if deployment.namespace != LOCAL_NAMESPACE or url is None:
            raise NotFoundError(f"no deployment {deployment.name!r}")
        return url

    async def list_deployments(self) -> list[DeploymentSummary]:
        timeout = aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            return list(await asyncio.gather(*(self._deployment(session, name) for name in sorted(self.deployments))))

    async def _deployment(self, session: aiohttp.ClientSession, name: str) -> DeploymentSummary:
        url = self.deployments[name]
        try:
            async with session.get(f"{url}{HEALTH_PATH}") as response:
                ready = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ready = False
        return DeploymentSummary(
            ref=DeploymentRef(namespace=LOCAL_NAMESPACE, name=name),
            model=url,
            nodes=1,
            ready_nodes=int(ready),
            ready=ready,
            predict_url=f"{url}/v1/models/{SERVED_MODEL}:predict",
        )

    async def predict(self, deployment: DeploymentRef, image: bytes, top_k: int) -> list[ScoredLabel]:
        url = f"{self._gateway(deployment)}/v1/models/{SERVED_MODEL}:predict"
        body = {
            "payload": {"image": {"imageBytes": base64.b64encode(image).decode()}},
            "params": {"score_threshold": "0"},
        }
        timeout = aiohttp.ClientTimeout(total=GATEWAY_TIMEOUT_S)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, json=body) as response:
                answer = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise SourceError(f"deployment {deployment.name!r} did not answer: {error}") from error
        if response.status != 200:
            message = answer.get("error", {}).get("message", "") if isinstance(answer, dict) else ""
            raise SourceError(f"deployment {deployment.name!r} answered HTTP {response.status}: {message}")
        scored = [
            ScoredLabel(label=item["displayName"], score=item["classification"]["score"]) for item in answer["payload"]
        ]
        return scored[:top_k]


def train_options(request: TrainingRequest) -> list[str]:
    """``autovision train``'s options for the form's optional choices (none when they are left empty)."""
    options = [f"--backbone={backbone}" for backbone in request.backbones]
    if request.nproc is not None:
        options.append(f"--nproc={request.nproc}")
    if request.export_formats:
        options.append("--export-formats=" + ",".join(str(f.value) for f in request.export_formats))
    if request.base_model is not None:
        options.append(f"--base-model={request.base_model}")
    return options
