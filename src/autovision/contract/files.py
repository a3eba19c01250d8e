"""The files the trainer writes and the operator (or a CLI) reads, as pydantic models.

Writers build one of these models and dump it with ``to_json``; readers validate
what they read with ``model_validate``. Unknown fields are ignored on reading, so
an older reader keeps working beside a newer writer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from pydantic import Field

from autovision.resources import BestTrial, Count, SplitCounts, StatusModel, Task, TrialCounts

SEARCHING_PHASE: Final = "Searching"
SUCCEEDED_PHASE: Final = "Succeeded"
# The budget cannot buy one validated model on this data and device: refused before training.
BUDGET_TOO_SMALL_PHASE: Final = "BudgetTooSmall"
RANK_LOST_PHASE: Final = "RankLost"


def now_iso() -> str:
    """The current UTC time as the files spell it (seconds, with offset)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class ContractFile(StatusModel):
    """Base of every exchanged file: camelCase on the wire, unknown fields ignored."""

    def to_json(self) -> dict[str, Any]:
        """The file's JSON content."""
        return self.model_dump(mode="json", by_alias=True)


class Progress(ContractFile):
    """A run's progress.json: the search's state, rewritten as it goes (read by the operator)."""

    updated_at: str = Field(default_factory=now_iso, description="When the trainer last wrote this file.")
    phase: str = Field(
        description="Searching while the search runs, Succeeded once the model is exported, "
        "BudgetTooSmall when the budget was refused before training, RankLost when a rank of the "
        "data-parallel final fit died or did not join in time (the Job retries from the last checkpoint)."
    )
    trials: TrialCounts = TrialCounts()
    best: BestTrial | None = None
    milli_node_hours_used: Count = 0
    search_milli_node_hours_used: Count | None = Field(
        default=None, description="The search's share of milliNodeHoursUsed (each share rounded on its own)."
    )
    final_fit_milli_node_hours_used: Count | None = Field(
        default=None, description="The final fit's share of milliNodeHoursUsed, once the model is exported."
    )
    minimum_budget_milli_node_hours: Count | None = Field(
        default=None, description="With BudgetTooSmall: an estimate of the smallest budget that would work."
    )
    artifacts: dict[str, str] | None = Field(
        default=None, description="Where every output of a finished run is; status shows the main ones."
    )
    message: str | None = Field(default=None, description="With RankLost: which rank failed, and how.")

    @property
    def succeeded(self) -> bool:
        """Whether the trainer finished and wrote its artifacts."""
        return self.phase == SUCCEEDED_PHASE


class ImportProgress(ContractFile):
    """A running import's import-progress.json: its stage and how far into it."""

    stage: str
    completed: float = 0.0
    total: float | None = None
    detail: str = ""
    updated_at: str = Field(default_factory=now_iso)

    def describe(self) -> str:
        """The stage and count, for the Importing condition's message."""
        if self.total:
            return f"{self.stage.lower()}: {self.completed:,.0f} of {self.total:,.0f}"
        return self.stage.lower()


class ImportWarning(ContractFile):
    """One warning of an import: a CamelCase reason and a readable message."""

    reason: str
    message: str


class ImportReportSummary(ContractFile):
    """The parts of an import's report.json that status and the trainer rely on."""

    task: Task = Task.SINGLE_LABEL
    total: Count = Field(description="Files seen in the source.")
    kept: Count = Field(description="Images accepted into the version.")
    rejected: Count = 0
    duplicates: Count = 0
    conflicts: Count = 0
    per_label: dict[str, SplitCounts] = Field(default={})
    warnings: list[ImportWarning] = Field(default=[])


class LatestVersion(ContractFile):
    """A dataset's latest.json: the version its last import made, what a new TrainingJob trains on."""

    version: str


# The layout of a dataset version: 1 = one object per image and manifest.jsonl (refused now);
# 2 = tar shards and index.parquet (docs/datasets-format.md).
DATASET_FORMAT: Final = 2


class ShardFacts(ContractFile):
    """One shard as the index promises it: a reader checks the object against this before trusting it."""

    number: int
    size: int = Field(description="The shard's length in bytes.")
    images: int


class DatasetIndexHeader(ContractFile):
    """What a version's index.parquet says about itself (its schema metadata): format and shards."""

    format_version: int
    shards: list[ShardFacts]


class DatasetVersionRef(ContractFile):
    """The dataset version a model was trained on."""

    name: str
    version: str


class ModelMetrics(ContractFile):
    """How good the model is: test-split metrics and what the search measured."""

    test_accuracy: float
    test_average_precision: float | None
    test_log_loss: float | None
    int8_test_accuracy: float
    score_threshold: float
    validation_metric: str
    validation_value: float | None
    validation_accuracy: float | None
    best_epoch: int | None
    epochs_trained: int
    latency_ms: float | None
    parameters: int | None


class FinalFit(ContractFile):
    """Which trial the final model is, and whether it was retrained on train + validation."""

    trial: int
    retrained: bool
    seconds: float
    checkpoint: str | None = Field(
        default=None,
        description="The checkpoint holding the final model's weights, relative to the run "
        "(final/checkpoint.pt or trials/<n>/checkpoint.pt): what a run with this one as its base starts from.",
    )


class BaseModelRecord(ContractFile):
    """The finished run a model continued from (``--base-model``, ``spec.baseModel``)."""

    run: str = Field(description="URI of the base run.")
    dataset: DatasetVersionRef = Field(description="The dataset version the base model was trained on.")
    test_accuracy: float = Field(description="The base model's test accuracy, on its own dataset version's test split.")


class ModelCard(ContractFile):
    """A run's model.json, written last: what the model is, how it was chosen, how good it is, where its files are."""

    task: Task
    architecture: dict[str, Any]
    training: dict[str, Any]
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    preprocessing: str
    labels: list[str]
    dataset: DatasetVersionRef
    metrics: ModelMetrics
    exports: dict[str, dict[str, Any]]
    parity: dict[str, dict[str, Any]]
    search: dict[str, Any]
    final_fit: FinalFit
    milli_node_hours_used: Count
    budget_milli_node_hours: int | None
    training_seconds: float
    artifacts: dict[str, str]
    base_model: BaseModelRecord | None = Field(
        default=None, description="The run this model continued from, when it was retrained from one."
    )
    created_at: str = Field(default_factory=now_iso)

    @property
    def multi_label(self) -> bool:
        """Whether the model scores each label on its own (sigmoid) rather than one of them (softmax)."""
        return self.task == Task.MULTI_LABEL

    def mismatch(self, labels: Sequence[str], task: Task) -> str | None:
        """What keeps this model from continuing training on a dataset with these labels (in the model's output
        order) and task; None when it fits. The trainer and the operator check a base model with it."""
        if self.task != task:
            return f"the base model is {self.task.value}, the dataset {task.value}"
        if self.labels == list(labels):
            return None
        if sorted(self.labels) == sorted(labels):
            return "the base model's labels are the dataset's in another order"
        missing, extra = sorted(set(labels) - set(self.labels)), sorted(set(self.labels) - set(labels))
        parts = [f"the dataset has {', '.join(missing)}, which the base model lacks"] if missing else []
        parts += [f"the base model has {', '.join(extra)}, which the dataset lacks"] if extra else []
        return "the labels differ: " + "; ".join(parts)


class ExplainedImage(ContractFile):
    """One test image explained in evaluation.json: why the model gave it ``label``."""

    uri: str
    kind: str = Field(description="mistake (among the most confident mistakes) or correct (a few per label).")
    label: str = Field(description="The label explained: the model's top-1 label for the image.")
    score: float
    grid: list[list[float]] = Field(
        description="The attribution map averaged over a coarse square grid, rows top to bottom, scaled to [0, 1]."
    )


class EvaluationExplanations(ContractFile):
    """evaluation.json's ``explanations``: which method and settings produced the report's heatmaps, and the grids."""

    method: str = Field(description="grad_cam (on the family's last convolutional stage) or integrated_gradients.")
    settings: dict[str, Any] = Field(description="The method's settings (grid side; steps for integrated gradients).")
    images: list[ExplainedImage] = Field(default=[])


class FormatLatency(ContractFile):
    """One exported file's latency: one image (batch 1), one CPU thread of the machine that trained it, in ms."""

    median: float
    p90: float
    runs: int = Field(description="Timed calls, after a few untimed warm-up ones.")


class ExportedFormatFigures(ContractFile):
    """One entry of evaluation.json's ``formats``: an exported file run by its own runtime on the test split."""

    format: str = Field(description="onnx, int8 onnx, or an edge format (tflite, executorch, coreml).")
    file: str = Field(description="Its name in the model directory.")
    bytes: int = Field(description="Its size; for a package directory (ExecuTorch, Core ML), its files' total.")
    predictions_checked: bool = Field(
        description="False for a file no runtime here can run (Core ML predicts only on macOS): no figures then."
    )
    latency_ms: FormatLatency | None = None
    top1: float | None = Field(default=None, description="Share of test images whose top-1 label is one of theirs.")
    top1_agreement: float | None = Field(
        default=None, description="Share of test images whose top-1 label is the PyTorch model's."
    )


# The exported model's second output: its penultimate layer, for drift (docs/monitoring.md).
EMBEDDING_OUTPUT: Final = "embedding"


class LoggedLabel(ContractFile):
    """One label of a logged prediction's top-k."""

    label: str
    score: float


class LoggedPrediction(ContractFile):
    """One line of a prediction-log shard: what one sampled request saw and answered.

    Shards are JSON Lines, one object per line, written whole (never appended to),
    so a shard that exists is complete.
    """

    time: str = Field(description="When the gateway answered (UTC, ISO 8601).")
    deployment: str = Field(description="The ModelDeployment (or local serve) that logged it.")
    model: str = Field(description="The run (model) that answered.")
    sha256: str = Field(description="The sha256 of the request's image bytes, as received.")
    top: list[LoggedLabel] = Field(description="The answer's top-k labels and scores, best first.")
    latency_ms: float = Field(description="The gateway's time for the whole request, in milliseconds.")
    embedding: list[float] | None = Field(
        default=None, description="The model's embedding output, when the model exports one."
    )
    image_stored: bool = Field(default=False, description="Whether the image is stored under images/<sha256>.")


class DriftTest(ContractFile):
    """One test of a drift check: which aspect of the predictions, how, and its verdict."""

    aspect: str = Field(description="confidence (top-1 score), labels (predicted label) or embedding.")
    method: str = Field(description="The two-sample test used (docs/monitoring.md).")
    statistic: float
    p_value: float
    drift: bool = Field(description="Whether the p-value fell below the report's threshold.")


class DriftReport(ContractFile):
    """drift/latest.json under a deployment's prediction log: the last drift check (docs/monitoring.md).

    ``status`` is Drift, NoDrift or Unknown: Unknown when the window held too
    few logged predictions to tell (none at all is Unknown, never NoDrift).
    """

    status: str = Field(description="Drift, NoDrift or Unknown.")
    reason: str = Field(description="Why, in a sentence: the aspects that drifted, or why there is no verdict.")
    checked_at: str = Field(default_factory=now_iso, description="When the check ran (UTC, ISO 8601).")
    window_start: str = Field(description="The window's start (UTC, ISO 8601, inclusive).")
    window_end: str = Field(description="The window's end (UTC, ISO 8601, exclusive).")
    model: str = Field(description="The model (run) whose test split is the reference.")
    predictions: int = Field(description="Logged predictions of that model in the window.")
    reference_predictions: int = Field(description="Test images in the reference.")
    threshold: float = Field(description="The p-value below which a test calls drift (alpha / tests, Bonferroni).")
    tests: list[DriftTest] = Field(default=[])
