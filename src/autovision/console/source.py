"""What the console reads and writes, as one small typed interface with two implementations.

``ConsoleSource`` is every read and write the pages need. ``LocalSource``
(``autovision.console.local``) answers it from the local storage, background
``autovision`` processes and local ``serve`` gateways; the cluster's
``ClusterSource`` answers it from the custom resources (through the Kubernetes
API, with the caller's identity checked by a ``ConsoleGuard``) and the same
storage. Artifacts in storage (index.parquet, report.json, progress.json, the
model directory) are read by ``autovision.console.artifacts``, shared by both.

Every identifier the pages send back (a dataset, a version, an image's sha256,
a run) is a name checked here, never a path or URI: the console serves an image
only by ``(dataset, version, sha256)``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import ConfigDict, Field, field_validator

from autovision.resources import BestTrial, Count, EdgeFormat, OptimizeFor, StatusModel, Task, TrialCounts

# A Kubernetes name (RFC 1123 label), which dataset, job and deployment names are.
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A dataset version (``sha256-<hex>``) or a run uid: letters, digits and dashes only.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# The page size the image grid asks for, and the most one request may ask for.
DEFAULT_PAGE_SIZE = 60
MAX_PAGE_SIZE = 500


class ConsoleModel(StatusModel):
    """Base of what the console exchanges: camelCase JSON, unknown fields ignored."""

    def to_json(self) -> dict[str, Any]:
        """The JSON the API answers with."""
        return self.model_dump(mode="json", by_alias=True)


def checked_name(value: str, what: str = "name") -> str:
    """A Kubernetes-style name, or ValueError: what routes accept for datasets, jobs and deployments."""
    if not NAME_PATTERN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid name (lower-case letters, digits and '-')")
    return value


def checked_token(value: str, what: str) -> str:
    """A version or uid: no slash, no dot-dot, nothing a storage key could be steered with."""
    if not TOKEN_PATTERN.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} is not valid")
    return value


def checked_sha256(value: str) -> str:
    """An image's content hash (64 lower-case hex digits)."""
    if not SHA256_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a sha256")
    return value


class DatasetRef(ConsoleModel):
    """A dataset: its namespace (``local`` on the local runtime) and name."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str

    @field_validator("namespace", "name")
    @classmethod
    def _valid(cls, value: str) -> str:
        return checked_name(value)


class RunRef(ConsoleModel):
    """A training run: ``runs/<namespace>/<job>/<uid>`` in storage (the TrainingJob and its uid in a cluster)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    job: str
    uid: str

    @field_validator("namespace", "job")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return checked_name(value)

    @field_validator("uid")
    @classmethod
    def _valid_uid(cls, value: str) -> str:
        return checked_token(value, "run uid")


class DeploymentRef(ConsoleModel):
    """A deployment: a ModelDeployment in a cluster, a named local ``serve`` gateway locally."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str

    @field_validator("namespace", "name")
    @classmethod
    def _valid(cls, value: str) -> str:
        return checked_name(value)


# --- datasets ---------------------------------------------------------------


class DatasetPhase(StrEnum):
    """Where a dataset stands: as its Dataset resource's conditions say it (or local storage shows it)."""

    READY = "Ready"
    IMPORTING = "Importing"
    FAILED = "Failed"


class DatasetSummary(ConsoleModel):
    """One row of the datasets list."""

    ref: DatasetRef
    phase: DatasetPhase
    version: str | None = Field(default=None, description="The latest complete version; none before the first.")
    kept: Count | None = None
    labels: Count | None = None
    message: str = ""


class ImportState(ConsoleModel):
    """A dataset's import as the import page polls it: its stage while it runs, then how it ended."""

    phase: DatasetPhase
    stage: str = ""
    completed: float = 0.0
    total: float | None = None
    detail: str = ""
    version: str | None = None
    message: str = Field(default="", description="Why the import failed, in one line (Failed only).")


class ImageFilter(StrEnum):
    """Which images of a version the grid shows (besides a label)."""

    ALL = "all"
    REJECTED = "rejected"
    NEAR_DUPLICATES = "near-duplicates"
    CONFLICTING = "conflicting"
    UNASSIGNED = "unassigned"


class ImageQuery(ConsoleModel):
    """One page of a version's image grid."""

    label: str | None = None
    split: str | None = None
    filter: ImageFilter = ImageFilter.ALL
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)


class ImageTile(ConsoleModel):
    """One image in the grid: fetched by the page as ``(dataset, version, sha256)``, never by path."""

    sha256: str | None = Field(description="None for a rejected file: it was never stored.")
    labels: list[str] = Field(default=[])
    split: str = ""
    width: int = 0
    height: int = 0
    source: str = Field(default="", description="The file's name in the source.")
    note: str = Field(default="", description="Why it is in a filter: the reject reason, the conflicting labels...")
    pair: str | None = Field(default=None, description="Near-duplicates: the sha256 of the image it resembles.")


class ImagePage(ConsoleModel):
    """A page of tiles and how many match in all."""

    total: Count
    offset: Count
    tiles: list[ImageTile]


class ImportRequest(ConsoleModel):
    """Import a dataset: from a URI or path the importer reads, or from an uploaded zip the console received."""

    dataset: DatasetRef
    task: Task = Task.SINGLE_LABEL
    source: str | None = Field(default=None, description="A path or URI (file://, s3://...) the importer reads.")
    upload: Path | None = Field(default=None, description="A zip the console wrote to its own upload folder.")


# --- training ---------------------------------------------------------------


class RunPhase(StrEnum):
    """Where a run stands: progress.json's phase, plus the states before and after it."""

    PENDING = "Pending"
    SEARCHING = "Searching"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class RunSummary(ConsoleModel):
    """One row of the runs list."""

    ref: RunRef
    dataset: DatasetRef
    phase: RunPhase
    trials: TrialCounts = TrialCounts()
    best: BestTrial | None = None
    milli_node_hours_used: Count = 0
    budget_milli_node_hours: int | None = None
    updated_at: str = ""
    message: str = ""


class RunDetail(ConsoleModel):
    """The live view of one search: the summary, every trial so far, and the chosen model once it exists."""

    summary: RunSummary
    metric: str | None = None
    trials: list[dict[str, Any]] = Field(default=[], description="Trial rows as the model card spells them.")
    pareto_front: list[dict[str, Any]] = Field(default=[])
    chosen_trial: int | None = None
    stop_reason: str | None = None
    architecture: dict[str, Any] | None = None
    optimize_for: str | None = None


class TrainingRequest(ConsoleModel):
    """Start a run with ``autovision train``'s choices."""

    dataset: DatasetRef
    budget_milli_node_hours: int = Field(ge=1)
    optimize_for: OptimizeFor = OptimizeFor.BALANCED
    early_stopping: bool = True
    seed: int = Field(default=0, ge=0)
    backbones: list[str] = Field(
        default=[], max_length=8, description="User backbones, NAME=ARCH@URI each (train --backbone)."
    )
    nproc: int | None = Field(default=None, ge=1, description="Processes of the final fit (train --nproc; local).")
    export_formats: list[EdgeFormat] = Field(default=[], description="Edge formats written too (--export-formats).")
    base_model: str | None = Field(
        default=None,
        max_length=1000,
        description="Continue from this finished run (train --base-model): locally a run prefix or URI, "
        "in a cluster a TrainingJob's name.",
    )


class EvaluationView(ConsoleModel):
    """What the Evaluate page needs, the threshold slider's data included (recomputed in the page)."""

    run: RunRef
    dataset: DatasetRef
    version: str
    evaluation: dict[str, Any] = Field(description="evaluation.json as the run wrote it.")
    labels: list[str]
    truth: list[list[int]] = Field(description="Per test image, the indices of its true labels.")
    scores: list[list[float]] = Field(description="Per test image, the score of each label (rounded).")
    images: list[str | None] = Field(description="Per test image, its sha256 (None when not in the version).")
    explained: list[str | None] = Field(
        default=[],
        description="Per image of evaluation.json's explanations, its sha256 (None when not in the version).",
    )
    multi_label: bool = False
    metrics: dict[str, Any] = Field(description="The model card's metrics: fp32 and int8 accuracy, latency.")
    parity: dict[str, Any] = Field(default={})


# --- deployments ------------------------------------------------------------


class DeploymentSummary(ConsoleModel):
    """One deployment: its model, replicas and readiness, and where its AutoML JSON endpoint is."""

    ref: DeploymentRef
    model: str = Field(default="", description="The run (or model URI) it serves.")
    model_version: str = ""
    nodes: Count = 0
    ready_nodes: Count = 0
    ready: bool = False
    predict_url: str = Field(default="", description="The AutoML JSON :predict URL, for the curl snippet.")


class ScoredLabel(ConsoleModel):
    """One label of a prediction's top-k."""

    label: str
    score: float


class SourceError(Exception):
    """A read or write the source refuses or cannot do: its message is shown in the page as it is."""


class NotFoundError(SourceError):
    """The named dataset, version, image, run or deployment does not exist (or the caller may not see it)."""


class ConsoleSource(Protocol):
    """Every read and write the console's pages make; raise SourceError (or NotFoundError) with a readable line."""

    async def list_datasets(self) -> list[DatasetSummary]:
        """Every dataset the caller may see, newest state first."""
        ...

    async def dataset_report(self, dataset: DatasetRef, version: str) -> dict[str, Any]:
        """A version's report.json (counts per label and split, warnings, rejects, duplicates)."""
        ...

    async def images(self, dataset: DatasetRef, version: str, query: ImageQuery) -> ImagePage:
        """One page of a version's images by label, split and filter, read from its index, not its images."""
        ...

    async def image_bytes(self, dataset: DatasetRef, version: str, sha256: str) -> bytes:
        """One stored image's bytes, found through the version's index."""
        ...

    async def start_import(self, request: ImportRequest) -> None:
        """Start importing (locally a background import; in a cluster a Dataset resource); returns at once."""
        ...

    async def import_state(self, dataset: DatasetRef) -> ImportState:
        """How the dataset's import is going (import-progress.json while it runs)."""
        ...

    async def list_runs(self) -> list[RunSummary]:
        """Every training run the caller may see."""
        ...

    async def run_detail(self, run: RunRef) -> RunDetail:
        """One run's live search state: progress, trials so far, and the chosen model once exported."""
        ...

    async def evaluation(self, run: RunRef) -> EvaluationView:
        """A finished run's evaluation with its saved test predictions."""
        ...

    async def start_training(self, request: TrainingRequest) -> RunRef:
        """Start a run (locally ``autovision train`` in the background; in a cluster a TrainingJob)."""
        ...

    async def list_deployments(self) -> list[DeploymentSummary]:
        """Every deployment the caller may see, with replicas and readiness."""
        ...

    async def predict(self, deployment: DeploymentRef, image: bytes, top_k: int) -> list[ScoredLabel]:
        """The deployment's top-k for one image, asked through its AutoML JSON gateway."""
        ...
