"""The AutoVision custom resources: Dataset, TrainingJob and ModelDeployment.

These pydantic models are the single source of truth for the API: the CRDs in
``crds/`` and in the Helm chart are generated from them (see ``autovision.crds``),
the operator reads and writes resources through them, and the local runtime
builds them from the command line. Validation that the API server can enforce
lives here as field constraints (ranges, enums, patterns) and as CEL rules
attached with ``json_schema_extra``, so both sides reject the same input.

On the wire every field is camelCase, as in every Kubernetes API.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

GROUP: Final = "autovision.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "autovision.dev/v1alpha1"
READY: Final = "Ready"
"""The condition every AutoVision resource reports; printer columns read it."""

# A DNS-1123 subdomain: what Kubernetes accepts as an object name.
ObjectName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    ),
]
# Any URI with a scheme (s3://, file://, gs://, https://): storage is fsspec's business.
Uri = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*://\S+$")]
Count = Annotated[int, Field(ge=0)]
MAX_IMPORT_PODS: Final = 256
"""The most pods (slices) one import fans out over: the trainer's ``--slices`` bound too."""


class WireModel(BaseModel):
    """Base of every model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, extra="forbid")


class StatusModel(WireModel):
    """Base of status parts: unknown fields are ignored, not rejected.

    Status is written by the operator, so an older operator must still read the
    status a newer one wrote; user-written specs, by contrast, forbid unknown
    fields so that a typo is an error rather than a silently ignored setting.
    """

    model_config = ConfigDict(extra="ignore")


# --- conditions -------------------------------------------------------------


class ConditionStatus(StrEnum):
    """The tri-state status of a condition, as in metav1.Condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """One observation of the resource's state, shaped like metav1.Condition."""

    type: str = Field(
        description="Condition type in CamelCase, e.g. Ready, Importing, Searching, Failed.",
        min_length=1,
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: ConditionStatus = Field(description="Whether the condition holds: True, False or Unknown.")
    reason: str = Field(
        description="Machine-readable CamelCase reason for the last transition, e.g. BudgetSpent.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(default="", description="Human-readable details about the transition.", max_length=32768)
    last_transition_time: AwareDatetime = Field(
        description="When the status last changed (RFC 3339, second precision)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was computed from."
    )

    @field_validator("last_transition_time")
    @classmethod
    def _second_precision(cls, value: datetime) -> datetime:
        """metav1.Time keeps whole seconds; truncating keeps round trips equal."""
        return value.replace(microsecond=0)


def find_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    """Return the condition of this type, if present: what readers of status need."""
    return next((condition for condition in conditions if condition.type == type), None)


def set_condition(  # noqa: PLR0917 - the shared signature, in metav1.Condition's field order
    conditions: Sequence[Condition],
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    *,
    observed_generation: int | None = None,
) -> list[Condition]:
    """Return ``conditions`` with the condition of ``type`` set, the others untouched.

    lastTransitionTime changes only when the status does, as Kubernetes
    conventions require, so that re-running a handler with the same outcome is
    a no-op on status and the age of a state stays truthful.
    """
    current = find_condition(conditions, type)
    transition_time = now if current is None or current.status != status else current.last_transition_time
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition_time,
        observed_generation=observed_generation,
    )
    if current is None:
        return [*conditions, updated]
    return [updated if condition is current else condition for condition in conditions]


class ResourceStatus(StatusModel):
    """The status fields every AutoVision resource shares."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default=[],
        description="Latest observations of the resource's state; Ready summarises them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


# --- shared spec parts ------------------------------------------------------


class LocalObjectReference(WireModel):
    """A reference to another object in the same namespace, by name only."""

    name: ObjectName = Field(description="Name of the referenced object in the same namespace.")


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata AutoVision reads; the rest is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


# --- Dataset ----------------------------------------------------------------


class Task(StrEnum):
    """Whether each image has exactly one label or any number of them."""

    SINGLE_LABEL = "SingleLabel"
    MULTI_LABEL = "MultiLabel"


class Split(WireModel):
    """How imported images are divided into train, validation and test, in percent."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.train + self.validation + self.test == 100",
                    "message": "train + validation + test must sum to 100",
                }
            ]
        }
    )

    train: int = Field(default=80, ge=1, le=100, description="Percent of images to train on (at least 1).")
    validation: int = Field(
        default=10, ge=0, le=100, description="Percent of images for early stopping and the search."
    )
    test: int = Field(default=10, ge=0, le=100, description="Percent of images held out for evaluation.")
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the deterministic split, so that re-imports split identically.",
    )

    @model_validator(mode="after")
    def _sums_to_100(self) -> Self:
        total = self.train + self.validation + self.test
        if total != 100:
            raise ValueError(f"train + validation + test must sum to 100, got {total}")
        return self


class DatasetSpec(WireModel):
    """What to import: where the labelled images are and how to split them."""

    source: Uri = Field(
        description="URI of the images: a zip, a CSV index (uri,label...) or a prefix of "
        "one folder per label, e.g. s3://bucket/flowers.zip."
    )
    task: Task = Field(default=Task.SINGLE_LABEL, description="SingleLabel (one label per image) or MultiLabel.")
    split: Split = Field(default=Split(), description="Split percentages; ignored where the source fixes the split.")
    storage_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the source; "
        "when absent, the operator's own storage credentials are used.",
    )
    import_pods: int | None = Field(
        default=None,
        ge=1,
        le=MAX_IMPORT_PODS,
        description="Pods the import fans out over in a cluster (an Indexed Job): each validates and packs its "
        "slice of the source, pod 0 then merges them into the version. When unset, the operator derives it "
        "from the source's size (one pod per about 100,000 images, at most 32); a prefix of label folders, "
        "or a source the operator cannot read with its own credentials, gets one pod.",
    )


class SplitCounts(StatusModel):
    """Image counts of one label in each split."""

    train: Count = Field(default=0, description="Images in the train split.")
    validation: Count = Field(default=0, description="Images in the validation split.")
    test: Count = Field(default=0, description="Images in the test split.")


class DatasetCounts(StatusModel):
    """What the import found."""

    total: Count = Field(default=0, description="Images accepted into the dataset version.")
    rejected: Count = Field(default=0, description="Images rejected as unreadable or unlabelled.")
    duplicates: Count = Field(default=0, description="Images dropped as byte-identical duplicates.")
    per_label: dict[str, SplitCounts] = Field(default={}, description="Accepted images per label and split.")


class DatasetStatus(ResourceStatus):
    """The result of the last import."""

    version: str | None = Field(default=None, description="Content address of the imported data, e.g. sha256-<hex>.")
    counts: DatasetCounts | None = Field(default=None, description="Image counts of the imported version.")
    report_uri: str | None = Field(default=None, description="URI of the import report (report.json).")
    import_pods: int | None = Field(
        default=None, description="Pods the import Job runs in: spec.importPods, or the default from the source."
    )


# --- TrainingJob ------------------------------------------------------------


class OptimizeFor(StrEnum):
    """The trade-off the architecture search optimises."""

    BALANCED = "Balanced"
    LOW_LATENCY = "LowLatency"
    HIGH_ACCURACY = "HighAccuracy"


class TrainingTarget(StrEnum):
    """Where the trained model runs: behind a Triton endpoint (Cloud) or on a phone or small device (Edge)."""

    CLOUD = "Cloud"
    EDGE = "Edge"

    def export_formats(self, requested: Sequence[EdgeFormat]) -> list[EdgeFormat]:
        """The edge formats a run writes: an Edge run's model is a ``.tflite`` file, whether asked for or not."""
        implied = [EdgeFormat.TFLITE] if self is TrainingTarget.EDGE else []
        return list(dict.fromkeys([*implied, *requested]))


class EdgePreset(StrEnum):
    """AutoML Vision Edge's three model presets, each one of ``OptimizeFor``'s trade-offs."""

    HIGHER_ACCURACY = "HigherAccuracy"
    BEST_TRADE_OFF = "BestTradeOff"
    FASTER_PREDICTIONS = "FasterPredictions"

    @property
    def optimize_for(self) -> OptimizeFor:
        """The trade-off the search optimises for this preset."""
        return _PRESET_OPTIMIZE_FOR[self]


_PRESET_OPTIMIZE_FOR: Final = {
    EdgePreset.HIGHER_ACCURACY: OptimizeFor.HIGH_ACCURACY,
    EdgePreset.BEST_TRADE_OFF: OptimizeFor.BALANCED,
    EdgePreset.FASTER_PREDICTIONS: OptimizeFor.LOW_LATENCY,
}


class EdgeFormat(StrEnum):
    """The edge formats a run may write besides ONNX, TorchScript and int8 ONNX (docs/edge.md)."""

    TFLITE = "tflite"
    # Full-integer int8 LiteRT, calibrated on training images only.
    TFLITE_INT8 = "tflite-int8"
    COREML = "coreml"
    EXECUTORCH = "executorch"


class ArtifactPolicy(StrEnum):
    """What happens to the run's storage prefix when the TrainingJob is deleted."""

    RETAIN = "Retain"
    DELETE = "Delete"


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    """The taint effect a toleration tolerates."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(WireModel):
    """A core/v1 Toleration, copied onto the training pods."""

    key: str | None = Field(default=None, description="Taint key to tolerate; empty matches all keys.")
    operator: TolerationOperator = Field(
        default=TolerationOperator.EQUAL, description="Exists or Equal (compare value)."
    )
    value: str | None = Field(default=None, description="Taint value to match when operator is Equal.")
    effect: TaintEffect | None = Field(default=None, description="Taint effect to tolerate; empty matches all effects.")
    toleration_seconds: int | None = Field(
        default=None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class TrainingResources(WireModel):
    """Where and on how much hardware the search runs."""

    nodes: int = Field(default=1, ge=1, description="Training pods; each runs search trials in parallel.")
    gpus_per_node: int = Field(default=1, ge=0, description="GPUs requested per training pod; 0 trains on CPU.")
    node_selector: dict[str, str] = Field(
        default={}, description="Node labels the training pods must match; empty uses the operator's GPU node selector."
    )
    tolerations: list[Toleration] = Field(
        default=[], description="Tolerations of the training pods; empty uses the operator's defaults."
    )


class ExportOptions(WireModel):
    """The formats written after the usual ones (ONNX, TorchScript, int8 ONNX)."""

    formats: list[EdgeFormat] = Field(
        default=[],
        description="Edge formats to write beside model.onnx: tflite (LiteRT), tflite-int8 (full-integer int8 "
        "LiteRT, calibrated on training images), coreml (Core ML) or executorch (.pte, XNNPACK). Each needs the "
        "edge extra in the trainer image (ExecuTorch also its own venv); a format the trainer cannot write fails "
        "the run before training starts.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class DeployOptions(WireModel):
    """Deploy the trained model as soon as training succeeds."""

    nodes: int = Field(default=1, ge=1, description="Serving replicas of the ModelDeployment created.")


ResNetArchitecture = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
"""The torchvision architectures whose weights a user backbone may bring."""
# A DNS-1123 label: built-in family names contain "_", so a backbone's name never shadows one.
BackboneName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]


class Backbone(WireModel):
    """A pretrained backbone the search may fine-tune besides the built-in ones, with the user's own weights."""

    name: BackboneName = Field(
        description="The backbone's family name in trials and model cards: lowercase letters, digits and '-'."
    )
    architecture: ResNetArchitecture = Field(description="The torchvision architecture the weights belong to.")
    weights_uri: Uri = Field(
        description="URI of the weights: a torchvision state_dict of that architecture, saved with torch.save; "
        "read with the storage credentials, never downloaded from a hub."
    )

    @classmethod
    def parse(cls, text: str) -> Backbone:
        """A backbone from its command-line form ``NAME=ARCHITECTURE@URI``; ValueError with one readable message."""
        name, equals, rest = text.partition("=")
        architecture, at, uri = rest.partition("@")
        if not (equals and at):
            raise ValueError(f"{text!r} is not NAME=ARCHITECTURE@URI, e.g. mine=resnet50@s3://bucket/resnet50.pth")
        try:
            return cls.model_validate({"name": name, "architecture": architecture, "weightsUri": uri})
        except ValidationError as error:
            raise ValueError(f"{text!r}: {_describe(error)}") from None

    def as_option(self) -> str:
        """The command-line form ``parse`` reads: how the operator hands a backbone to the trainer."""
        return f"{self.name}={self.architecture}@{self.weights_uri}"


class ModelRef(WireModel):
    """The model to serve: a TrainingJob's result or a model repository URI."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.trainingJob) != has(self.uri)", "message": "set exactly one of trainingJob or uri"}
            ]
        }
    )

    training_job: ObjectName | None = Field(
        default=None, description="Name of a TrainingJob in the same namespace whose model to serve."
    )
    uri: Uri | None = Field(default=None, description="URI of a Triton model repository to serve.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.training_job is None) == (self.uri is None):
            raise ValueError("set exactly one of trainingJob or uri")
        return self


class BaseModelRef(ModelRef):
    """A finished run a TrainingJob continues from, named as ModelDeployment's ``modelRef`` names a model."""

    training_job: ObjectName | None = Field(
        default=None,
        description="Name of a TrainingJob in the same namespace that finished: its final weights are the start.",
    )
    uri: Uri | None = Field(
        default=None, description="URI of a finished run (the directory holding model/model.json) to start from."
    )


_PRESET_NEEDS_EDGE: Final = "an edge preset (edgePreset, --edge-preset) needs target Edge (--target edge)"
_PRESET_SETS_OPTIMIZE_FOR: Final = (
    "an edge preset sets optimizeFor (HigherAccuracy: HighAccuracy, BestTradeOff: Balanced, FasterPredictions: "
    "LowLatency): give one or the other"
)


def search_trade_off(
    target: TrainingTarget, edge_preset: EdgePreset | None, optimize_for: OptimizeFor | None
) -> OptimizeFor:
    """The trade-off a search optimises: the edge preset's, else ``optimize_for`` (Balanced when neither is given).

    ValueError when a preset is given without target Edge, or together with ``optimize_for``
    (the TrainingJob's CEL rules and ``autovision train`` refuse the same).
    """
    if edge_preset is None:
        return optimize_for or OptimizeFor.BALANCED
    if target is not TrainingTarget.EDGE:
        raise ValueError(_PRESET_NEEDS_EDGE)
    if optimize_for is not None:
        raise ValueError(_PRESET_SETS_OPTIMIZE_FOR)
    return edge_preset.optimize_for


class TrainingJobSpec(WireModel):
    """What to train on and how much it may cost."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.baseModel) || !has(self.backbones) || size(self.backbones) == 0",
                    "message": "a TrainingJob with baseModel trains the base's architecture: remove backbones",
                },
                {"rule": "!has(self.edgePreset) || self.target == 'Edge'", "message": _PRESET_NEEDS_EDGE},
                {"rule": "!has(self.edgePreset) || !has(self.optimizeFor)", "message": _PRESET_SETS_OPTIMIZE_FOR},
            ]
        }
    )

    dataset_ref: LocalObjectReference = Field(description="The Dataset to train on.")
    budget_milli_node_hours: int = Field(
        # AutoML Vision's minimum is 1000 (one node-hour) because its backbones
        # are large; ours start at EfficientNet-Lite0, which fits small datasets
        # in minutes. 10 (36 node-seconds) stays only as a floor: the trainer
        # measures what the cheapest model needs on the data and device and
        # refuses a smaller budget with a BudgetTooSmall condition.
        ge=10,
        description="Training budget in thousandths of a node-hour (1000 = one node for one "
        "hour), measured in device time, and a ceiling: never exceeded. At least 10 (a floor); a budget "
        "that cannot buy one validated model on the data and device is refused before training with a "
        "BudgetTooSmall condition giving an estimate of the smallest that would.",
    )
    optimize_for: OptimizeFor | None = Field(
        default=None,
        description="Balanced (the default), LowLatency (smaller, faster models) or HighAccuracy. Not with "
        "edgePreset, which sets it.",
    )
    target: TrainingTarget = Field(
        default=TrainingTarget.CLOUD,
        description="Cloud (served by Triton) or Edge (a phone or small device): an Edge run measures each "
        "trial's latency with the LiteRT interpreter on one CPU thread (a stand-in for a phone's CPU), records "
        "its .tflite size, and writes model.tflite (tflite is added to export.formats; it needs the edge extra "
        "in the trainer image).",
    )
    edge_preset: EdgePreset | None = Field(
        default=None,
        description="AutoML Vision Edge's presets, target Edge only: HigherAccuracy (optimizeFor HighAccuracy), "
        "BestTradeOff (Balanced) or FasterPredictions (LowLatency). Not with optimizeFor.",
    )
    early_stopping: bool = Field(
        default=True, description="Stop before the budget is spent when the search stops improving."
    )
    resources: TrainingResources = Field(default=TrainingResources(), description="Nodes and GPUs the search runs on.")
    deploy: DeployOptions | None = Field(default=None, description="When set, deploy the best model after training.")
    export: ExportOptions = Field(default=ExportOptions(), description="Extra formats the run writes.")
    artifact_policy: ArtifactPolicy = Field(
        default=ArtifactPolicy.RETAIN,
        description="Retain or Delete the run's stored artifacts when the TrainingJob is deleted.",
    )
    backbones: list[Backbone] = Field(
        default=[],
        description="Backbones with the user's own weights that the search may pick besides the built-in ones.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    base_model: BaseModelRef | None = Field(
        default=None,
        description="Retrain from a served model: every trial starts from this finished run's final weights, "
        "with its architecture and preprocessing, and only the learning rate and epochs are searched. Its labels "
        "(in order) and task must be the Dataset's; until they are, Ready is False with reason BaseModelMismatch "
        "and no Job starts (BaseModelNotReady while the run is missing or unfinished). Not with backbones.",
    )

    @model_validator(mode="after")
    def _no_backbones_with_a_base_model(self) -> Self:
        if self.base_model is not None and self.backbones:
            raise ValueError("a TrainingJob with baseModel trains the base's architecture: remove backbones")
        return self

    @model_validator(mode="after")
    def _preset_only_for_edge_and_alone(self) -> Self:
        search_trade_off(self.target, self.edge_preset, self.optimize_for)
        return self

    @property
    def search_optimize_for(self) -> OptimizeFor:
        """What the search optimises: the edge preset's trade-off, else ``optimizeFor`` (Balanced by default)."""
        return search_trade_off(self.target, self.edge_preset, self.optimize_for)

    @field_validator("backbones")
    @classmethod
    def _unique_backbone_names(cls, backbones: list[Backbone]) -> list[Backbone]:
        """The API server refuses duplicate keys of a map list; so does the model."""
        names = [backbone.name for backbone in backbones]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"backbone names must be unique: {', '.join(duplicates)} repeated")
        return backbones


class TrialOutcome(StrEnum):
    """What a trial is doing, or what ended it (the trials table, progress.json and status say the same)."""

    RUNNING = "Running"
    COMPLETE = "Complete"
    PRUNED = "Pruned"
    STOPPED_BY_BUDGET = "StoppedByBudget"
    INTERRUPTED = "Interrupted"


class TrialCounts(StatusModel):
    """Progress of the architecture and hyperparameter search: trials by ``TrialOutcome``."""

    done: Count = Field(default=0, description="Trials that trained all their epochs (Complete).")
    running: Count = Field(default=0, description="Trials running now.")
    pruned: Count = Field(default=0, description="Trials stopped early by the Hyperband pruner.")
    stopped_by_budget: Count = Field(
        default=0, description="Trials the budget stopped (inside an epoch), validated on what they learned."
    )
    interrupted: Count = Field(default=0, description="Trials whose worker was lost; each is resumed as a new trial.")


class BestTrial(StatusModel):
    """The best trial so far."""

    trial: Count = Field(description="Trial number.")
    architecture: str = Field(description="Model architecture of the trial.")
    metric: str = Field(description="Name of the metric optimised, e.g. accuracy.")
    value: float = Field(description="The trial's value of that metric on validation data.")
    latency_ms: float | None = Field(
        default=None,
        description="Its batch-1 latency in milliseconds: PyTorch on the training device (target Cloud), or its "
        ".tflite file in the LiteRT interpreter on one CPU thread (target Edge; a stand-in for a phone's CPU).",
    )
    model_bytes: Count | None = Field(default=None, description="Size of its .tflite file in bytes (target Edge).")


class Artifacts(StatusModel):
    """Where the run's outputs are stored."""

    model: str | None = Field(default=None, description="URI of the exported model files.")
    evaluation: str | None = Field(default=None, description="URI of evaluation.json (test split).")
    report: str | None = Field(default=None, description="URI of the HTML model report.")
    triton_repository: str | None = Field(
        default=None, description="URI of the local Triton model repository (Python backend only)."
    )
    triton_cluster_repository: str | None = Field(
        default=None,
        description="URI of the Triton repository for NVIDIA's image (ensemble with the ONNX Runtime backend).",
    )


class TrainingJobStatus(ResourceStatus):
    """Progress and results of the search."""

    trials: TrialCounts = Field(default=TrialCounts(), description="Trial counts.")
    best: BestTrial | None = Field(default=None, description="The best trial so far.")
    milli_node_hours_used: Count = Field(
        default=0, description="Budget spent so far, in thousandths of a node-hour of device time."
    )
    search_milli_node_hours_used: Count | None = Field(
        default=None, description="The search's share of milliNodeHoursUsed (each share rounded on its own)."
    )
    final_fit_milli_node_hours_used: Count | None = Field(
        default=None,
        description="The final fit's share of milliNodeHoursUsed (over every rank of a data-parallel fit), "
        "once the model is exported.",
    )
    artifacts: Artifacts | None = Field(default=None, description="Outputs of the finished run.")


# --- ModelDeployment --------------------------------------------------------


class AutoscalingTarget(StrEnum):
    """The metric the autoscaler tracks."""

    INFLIGHT = "inflight"
    CPU = "cpu"


class Autoscaling(WireModel):
    """Let a HorizontalPodAutoscaler choose the number of serving nodes."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.minNodes <= self.maxNodes", "message": "minNodes must not exceed maxNodes"}
            ]
        }
    )

    min_nodes: int = Field(default=1, ge=1, description="Fewest serving replicas.")
    max_nodes: int = Field(ge=1, description="Most serving replicas.")
    target: AutoscalingTarget = Field(
        default=AutoscalingTarget.INFLIGHT,
        description="Scale on in-flight requests per replica (inflight) or CPU utilisation (cpu).",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_nodes > self.max_nodes:
            raise ValueError("minNodes must not exceed maxNodes")
        return self


class ServingAuth(WireModel):
    """Who may ask the deployed model for predictions."""

    require_token: bool = Field(
        default=False,
        description="Answer only callers sending a Kubernetes bearer token (Authorization: Bearer) whose user "
        "may create the predict subresource of this ModelDeployment (RBAC: verb create on "
        "modeldeployments/predict, group autovision.dev), checked by TokenReview and SubjectAccessReview; "
        "others get 401 UNAUTHENTICATED or 403 PERMISSION_DENIED. Triton's own KServe ports are then left "
        "out of the Service. The serving pods run as the chart's serving ServiceAccount, which must exist "
        "in the namespace (chart value servingAuth.namespaces).",
    )


class ExplainSpec(WireModel):
    """An explainer beside the served model: :explain answered with the prediction and a heatmap."""

    model_uri: Uri | None = Field(
        default=None,
        description="The model directory to explain (model.pt and model.json of a run's model/); by default the "
        "TrainingJob's model artifact. Required with modelRef.uri.",
    )
    replicas: int = Field(default=1, ge=1, le=16, description="Explainer pods (each explains a few at once).")
    cpu: str = Field(
        default="1", pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU each explainer pod requests (a quantity)."
    )
    memory: str = Field(
        default="2Gi",
        pattern=r"^[0-9]+(Ki|Mi|Gi)?$",
        description="Memory each explainer pod requests and is limited to (a quantity): torch, the model and "
        "integrated gradients' steps.",
    )
    time_limit_seconds: float = Field(
        default=30.0, ge=1, le=300, description="Longest explanation; past it the request is answered 504."
    )


class MonitoringSpec(WireModel):
    """A periodic drift check of the logged predictions against the served model's test split
    (docs/monitoring.md): a CronJob running ``autovision monitor``, its verdict the ``Drift`` condition."""

    schedule: str = Field(
        default="*/30 * * * *",
        max_length=100,
        pattern=r"^(@(hourly|daily|weekly|monthly|yearly)|\S+( \S+){4})$",
        description="When the check runs: a five-field cron schedule (UTC) or @hourly, @daily ...",
    )
    window_minutes: int = Field(
        default=60,
        ge=1,
        le=10080,
        description="The logged predictions compared: those of this many minutes before each check.",
    )
    alpha: float = Field(
        default=0.05,
        ge=0.0001,
        le=0.5,
        description="The chance that in-distribution traffic is called drift (split over the three tests).",
    )
    model_name: str | None = Field(
        default=None,
        max_length=253,
        description="Compare only records the log names as answered by this model; by default all of them.",
    )


class LoggingSpec(WireModel):
    """The gateway's prediction log: a sample of the answered requests, written to storage in batches."""

    rate: float = Field(
        ge=0,
        le=1,
        description="Fraction of prediction requests the gateway logs (0 to 1; 0 logs nothing): the image's "
        "sha256, the model that answered, its top-5 labels and scores, the latency and the time, batched into "
        "JSON Lines shards under predictions/<namespace>/<name>/ of the operator's storage root. Logging never "
        "slows or fails a request: a full buffer or an unavailable storage drops records and counts them "
        "(the gateway's /metrics).",
    )
    images: bool = Field(
        default=False,
        description="Also store each logged request's image, once per sha256, under "
        "predictions/<namespace>/<name>/images/: what autovision review-set exports for labelling.",
    )


class TrafficTarget(WireModel):
    """One model of a traffic split: a finished run and the share of requests it answers."""

    training_job: ObjectName = Field(description="Name of a finished TrainingJob in the same namespace.")
    percent: int = Field(ge=0, le=100, description="Percent of prediction requests this model answers.")
    nodes: int | None = Field(
        default=None,
        ge=1,
        description="Triton replicas of this model; unset, it follows spec.nodes. Not on the primary (the largest "
        "share), which always runs spec.nodes, so that the scale subresource scales it.",
    )


class ShadowRef(WireModel):
    """A model that gets a copy of the traffic; its answers are compared with the primary's, never returned."""

    training_job: ObjectName = Field(description="Name of a finished TrainingJob in the same namespace.")
    nodes: int | None = Field(default=None, ge=1, description="Triton replicas of the shadow; unset, spec.nodes.")


class RolloutGate(WireModel):
    """What a candidate must show, at each step, over enough requests, before it gets more traffic."""

    min_requests: int = Field(
        default=100, ge=1, le=10_000_000, description="Requests the candidate must answer (or shadow) at a step."
    )
    min_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Top-1 agreement with the current model the candidate must reach while it shadows it "
        "(a first step at 0 %, answering nobody); unset skips that step.",
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Highest fraction of the candidate's requests that may fail."
    )
    max_p99_ms: float | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Highest 99th percentile latency (ms) of the candidate, as the gateway measures it; unset: any.",
    )


class RolloutSpec(WireModel):
    """Replace the served model by ``spec.modelRef``'s step by step, each step gated; roll back when the gate fails."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.steps.isSorted() && self.steps[size(self.steps) - 1] == 100",
                    "message": "steps must increase and end at 100",
                }
            ]
        }
    )

    steps: list[Annotated[int, Field(ge=1, le=100, description="Percent of requests at this step.")]] = Field(
        default=[10, 50, 100],
        min_length=1,
        max_length=10,
        description="Percent of requests the candidate answers at each step, increasing, ending at 100.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    gate: RolloutGate = Field(default=RolloutGate(), description="What promotes the candidate to the next step.")
    readiness_timeout_seconds: int = Field(
        default=900,
        ge=1,
        le=86_400,
        description="The candidate's Triton pods must all be ready this long after the rollout starts, "
        "else it rolls back.",
    )
    paused: bool = Field(default=False, description="Hold the rollout at its current step (kubectl patch).")
    abort: bool = Field(
        default=False, description="Roll back to the current model now and stop; clear it to roll out again."
    )

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, steps: list[int]) -> list[int]:
        if any(later <= earlier for earlier, later in itertools.pairwise(steps)) or steps[-1] != 100:
            raise ValueError(f"steps must increase and end at 100, got {steps}")
        return steps


_SPEC_RULES: Final[list[JsonValue]] = [
    {"rule": "has(self.modelRef) != has(self.traffic)", "message": "set exactly one of modelRef or traffic"},
    {
        "rule": "!has(self.rollout) || (has(self.modelRef) && has(self.modelRef.trainingJob))",
        "message": "a rollout rolls out modelRef.trainingJob: set modelRef.trainingJob, not traffic or a uri",
    },
    {
        "rule": "!has(self.shadow) || ((!has(self.traffic) || "
        "self.traffic.all(t, t.trainingJob != self.shadow.trainingJob)) && "
        "!(has(self.modelRef) && has(self.modelRef.trainingJob) && "
        "self.modelRef.trainingJob == self.shadow.trainingJob))",
        "message": "the shadow must not also be a primary model",
    },
    {
        "rule": "!has(self.shadow) || !has(self.rollout)",
        "message": "a rollout shadows its candidate itself: set shadow or rollout, not both",
    },
    {
        "rule": "!has(self.traffic) || "
        "self.traffic.all(t, !has(t.nodes) || self.traffic.exists(u, u.percent > t.percent))",
        "message": "the primary model (the largest share) runs spec.nodes: set nodes only on the others",
    },
]


class ModelDeploymentSpec(WireModel):
    """Which models to serve, in what shares, on how many nodes.

    Each model runs in its own Triton Deployment behind one gateway Deployment that
    splits the traffic; ``nodes``, ``autoscaling`` and the PodDisruptionBudget apply
    per model, to its own Triton Deployment.
    """

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _SPEC_RULES})

    model_ref: ModelRef | None = Field(
        default=None, description="The one model to serve (all traffic); the shorthand of a traffic of one."
    )
    traffic: list[TrafficTarget] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Several finished runs and the percent of requests each answers, summing to 100; "
        "instead of modelRef.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["trainingJob"],
            "x-kubernetes-validations": [
                {
                    "rule": "self.map(t, t.percent).sum() == 100",
                    "message": "percents must sum to 100",
                }
            ],
        },
    )
    shadow: ShadowRef | None = Field(
        default=None,
        description="A model that receives a copy of every request; its top-1 agreement with the model that "
        "answered is recorded in status, its answers are never returned.",
    )
    sticky_header: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$",
        description="A request header (e.g. X-User) whose value keeps a client on one model of the split; "
        "unset routes each request afresh.",
    )
    rollout: RolloutSpec | None = Field(
        default=None,
        description="When set, a new modelRef.trainingJob replaces the served model step by step, gated, "
        "and rolls back by itself; unset, it replaces it as soon as its pods are ready.",
    )
    nodes: int = Field(
        default=1,
        ge=1,
        description="Triton replicas of the primary model (the largest share), and of every other model that "
        "does not set its own nodes; the scale subresource sets this and reports the primary model's replicas.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None,
        description="When set, an autoscaler per model adjusts its Triton replicas within these bounds.",
    )
    score_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Predictions scoring below this are left out of responses."
    )
    auth: ServingAuth = Field(default=ServingAuth(), description="Token checks of prediction requests.")
    explain: ExplainSpec | None = Field(
        default=None,
        description="When set, an explainer Deployment of its own (torch, on CPUs) answers :explain through the "
        "gateway with heatmaps (Grad-CAM, integrated gradients); unset, :explain answers 404.",
    )
    monitoring: MonitoringSpec | None = Field(
        default=None,
        description="When set, a CronJob checks the logged predictions (spec.logging) for drift from the primary "
        "model's test split and the Drift condition reports the last verdict; unset, neither exists.",
    )
    logging: LoggingSpec | None = Field(
        default=None,
        description="When set, the gateway logs a sample of its predictions to storage (for drift checks and "
        "review sets), with the primary model's storage credentials; unset, nothing is logged.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """The CEL rules above, for clients that parse a spec without the API server."""
        if (self.model_ref is None) == (self.traffic is None):
            raise ValueError("set exactly one of modelRef or traffic")
        runs = [target.training_job for target in self.traffic or []]
        if len(set(runs)) != len(runs):
            raise ValueError(f"a run appears twice in traffic: {runs}")
        total = sum(target.percent for target in self.traffic or [])
        if self.traffic is not None and total != 100:
            raise ValueError(f"traffic percents must sum to 100, got {total}")
        primaries = [*runs, *([self.model_ref.training_job] if self.model_ref and self.model_ref.training_job else [])]
        if self.rollout is not None and (self.model_ref is None or self.model_ref.training_job is None):
            raise ValueError("a rollout rolls out modelRef.trainingJob: set modelRef.trainingJob, not traffic or a uri")
        if self.shadow is not None and self.shadow.training_job in primaries:
            raise ValueError("the shadow must not also be a primary model")
        if self.shadow is not None and self.rollout is not None:
            raise ValueError("a rollout shadows its candidate itself: set shadow or rollout, not both")
        top = max((target.percent for target in self.traffic or []), default=0)
        if any(target.nodes is not None and target.percent == top for target in self.traffic or []):
            raise ValueError("the primary model (the largest share) runs spec.nodes: set nodes only on the others")
        return self


class Endpoints(StatusModel):
    """In-cluster addresses of the deployed model."""

    http: str | None = Field(default=None, description="KServe v2 HTTP endpoint.")
    grpc: str | None = Field(default=None, description="KServe v2 gRPC endpoint.")
    predict: str | None = Field(default=None, description="AutoML-style JSON predict endpoint.")
    google_rest: str | None = Field(
        default=None, description="api_endpoint of Google's AutoML and Vertex AI clients over REST."
    )
    google_grpc: str | None = Field(
        default=None, description="Target of Google's AutoML and Vertex AI clients over gRPC (insecure channel)."
    )
    automl_model: str | None = Field(
        default=None, description="The model name to pass to AutoML v1 predict (project and location are ignored)."
    )
    vertex_endpoint: str | None = Field(
        default=None, description="The endpoint name to pass to Vertex AI predict (project and location are ignored)."
    )


class ModelTraffic(StatusModel):
    """One served model's share and what the gateways counted for it."""

    training_job: str = Field(description="The run whose model this is (a version for a modelRef.uri).")
    percent: int = Field(ge=0, le=100, description="Percent of requests routed to it now.")
    requests: Count = Field(default=0, description="Requests it answered, over the gateways' lifetimes.")
    errors: Count = Field(default=0, description="Of which failed.")
    p50_ms: float | None = Field(default=None, description="Median latency (ms, upper bound of its bucket).")
    p99_ms: float | None = Field(default=None, description="99th percentile latency (ms, upper bound of its bucket).")


class ShadowTraffic(StatusModel):
    """What the shadow (or a rollout's shadowing candidate) did with its copies of the traffic."""

    training_job: str = Field(description="The shadow's run.")
    compared: Count = Field(default=0, description="Requests whose answers were compared.")
    agreed: Count = Field(default=0, description="Of which the shadow's top-1 label equalled the primary's.")
    errors: Count = Field(default=0, description="Copies the shadow failed to answer.")
    agreement: float | None = Field(default=None, description="agreed / compared; unset before any comparison.")


class RolloutPhase(StrEnum):
    """Where a rollout stands."""

    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


class RolloutStatus(StatusModel):
    """The rollout of ``candidate`` against ``stable``, as the operator last decided it."""

    candidate: str = Field(description="The run being rolled out (spec.modelRef.trainingJob).")
    stable: str = Field(description="The run that served before, and that a rollback returns to.")
    phase: RolloutPhase = Field(description="Progressing, Paused, Promoted, RolledBack or Aborted.")
    step: int = Field(
        default=0,
        ge=0,
        description="Index of the current stage: spec.rollout.steps, after a shadowing stage at 0 % "
        "when gate.minAgreement is set.",
    )
    percent: int = Field(default=0, ge=0, le=100, description="Percent of requests the candidate answers now.")
    step_since: AwareDatetime = Field(description="When the current step began.")
    started: AwareDatetime = Field(description="When the rollout began (the readiness timeout counts from here).")
    message: str = Field(default="", description="Why the rollout is where it is.")


class ServedModelRecord(StatusModel):
    """A model that served (or serves) requests here, for how long, and why it stopped."""

    training_job: str = Field(description="Its run (a version for a modelRef.uri).")
    dataset_version: str | None = Field(default=None, description="The dataset version it was trained on.")
    evaluation: str | None = Field(default=None, description="Its best validation metric, e.g. accuracy=0.93.")
    since: AwareDatetime = Field(description="When it first answered requests.")
    until: AwareDatetime | None = Field(default=None, description="When it stopped; unset while it serves.")
    ended: str | None = Field(default=None, description="Why it stopped, e.g. replaced by a promoted rollout.")


class ModelDeploymentStatus(ResourceStatus):
    """What is being served and how much of it is ready."""

    nodes: Count = Field(default=0, description="Triton replicas of the primary model that exist.")
    ready_nodes: Count = Field(default=0, description="Triton replicas of the primary model ready for traffic.")
    selector: str | None = Field(
        default=None, description="Label selector of the primary model's Triton pods, for the scale subresource."
    )
    model_version: str | None = Field(default=None, description="Version of the primary model being served.")
    endpoints: Endpoints | None = Field(default=None, description="Where to send predictions.")
    traffic: list[ModelTraffic] = Field(default=[], description="Per served model: its share and its counts.")
    shadow: ShadowTraffic | None = Field(default=None, description="The shadow's agreement with the primary.")
    rollout: RolloutStatus | None = Field(default=None, description="The last rollout and where it stands.")
    history: list[ServedModelRecord] = Field(
        default=[], max_length=10, description="The last models that served, newest first."
    )


# --- the resources ----------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    """A column of ``kubectl get`` output."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class ScalePaths:
    """Where the scale subresource finds replicas and the pod selector."""

    spec_replicas: str
    status_replicas: str
    label_selector: str


@dataclass(frozen=True)
class KindInfo:
    """How a kind is named and shown in the API: everything a CRD needs besides the schema."""

    plural: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    scale: ScalePaths | None = None
    categories: tuple[str, ...] = ("autovision",)


def _ready_column(field: Literal["status", "reason"], priority: int = 0) -> PrinterColumn:
    """A column showing a field of the Ready condition: kubectl's view of health."""
    return PrinterColumn(
        name=READY if field == "status" else field.capitalize(),
        type="string",
        json_path=f'.status.conditions[?(@.type=="{READY}")].{field}',
        description=f"The {field} of the {READY} condition.",
        priority=priority,
    )


AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")


class CustomResource(WireModel):
    """Base of the three resources: apiVersion, kind, metadata, spec, status."""

    info: ClassVar[KindInfo]

    api_version: Literal["autovision.dev/v1alpha1"] = API_VERSION
    metadata: ObjectMeta = ObjectMeta()


class Dataset(CustomResource):
    """Labelled images imported into a validated, deduplicated, split, versioned dataset."""

    info: ClassVar[KindInfo] = KindInfo(
        plural="datasets",
        short_names=("avds",),
        printer_columns=(
            _ready_column("status"),
            _ready_column("reason"),
            PrinterColumn("Version", "string", ".status.version", "Content address of the data."),
            PrinterColumn("Images", "integer", ".status.counts.total", "Images accepted."),
            AGE,
        ),
    )

    kind: Literal["Dataset"] = "Dataset"
    spec: DatasetSpec = Field(description="Desired state: what to import.")
    status: DatasetStatus = Field(default=DatasetStatus(), description="Observed state of the import.")


class TrainingJob(CustomResource):
    """A budgeted search for the best image classifier on a Dataset."""

    info: ClassVar[KindInfo] = KindInfo(
        plural="trainingjobs",
        short_names=("avtj",),
        printer_columns=(
            _ready_column("status"),
            _ready_column("reason"),
            PrinterColumn("Best", "number", ".status.best.value", "Best validation metric so far."),
            PrinterColumn("Budget Used", "integer", ".status.milliNodeHoursUsed", "Milli node-hours spent so far."),
            AGE,
        ),
    )

    kind: Literal["TrainingJob"] = "TrainingJob"
    spec: TrainingJobSpec = Field(description="Desired state: what to train, within what budget.")
    status: TrainingJobStatus = Field(default=TrainingJobStatus(), description="Observed state of the search.")


class ModelDeployment(CustomResource):
    """A trained model served by Triton on a number of nodes."""

    info: ClassVar[KindInfo] = KindInfo(
        plural="modeldeployments",
        short_names=("avmd",),
        printer_columns=(
            _ready_column("status"),
            _ready_column("reason", priority=1),
            PrinterColumn("Nodes", "integer", ".spec.nodes", "Desired serving replicas."),
            PrinterColumn("Ready Nodes", "integer", ".status.readyNodes", "Ready serving replicas."),
            PrinterColumn("Model Version", "string", ".status.modelVersion", "Model being served."),
            AGE,
        ),
        scale=ScalePaths(
            spec_replicas=".spec.nodes", status_replicas=".status.nodes", label_selector=".status.selector"
        ),
    )

    kind: Literal["ModelDeployment"] = "ModelDeployment"
    spec: ModelDeploymentSpec = Field(
        description="Desired state: what to serve, in what shares, how widely. Each model runs in its own "
        "Triton Deployment behind one gateway Deployment that splits the traffic; nodes, autoscaling and a "
        "PodDisruptionBudget apply per model, to its own Triton Deployment. The scale subresource sets nodes, "
        "the replicas of the primary model (the largest share) and of the models that set none of their own, "
        "and reports the primary model's."
    )
    status: ModelDeploymentStatus = Field(
        default=ModelDeploymentStatus(), description="Observed state of the serving replicas."
    )


Resource = Dataset | TrainingJob | ModelDeployment
RESOURCE_TYPES: tuple[type[Resource], ...] = (Dataset, TrainingJob, ModelDeployment)
_BY_KIND: dict[str, type[Resource]] = {model.__name__: model for model in RESOURCE_TYPES}


class ResourceError(ValueError):
    """A manifest that is not a valid AutoVision resource, with one readable message."""


def parse_resource(obj: object) -> Resource:
    """Parse a manifest (as from YAML or the API server) into its resource model.

    Every problem is reported in one ResourceError naming the object and the
    offending fields, so callers can put it into a condition message as is.
    """
    if not isinstance(obj, Mapping):
        raise ResourceError(f"expected a mapping, got {type(obj).__name__}")
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if api_version != API_VERSION or not isinstance(kind, str) or kind not in _BY_KIND:
        raise ResourceError(
            f"not an AutoVision resource: apiVersion {api_version!r}, kind {kind!r}; expected "
            f"apiVersion {API_VERSION!r} and kind one of {', '.join(_BY_KIND)}"
        )
    try:
        return _BY_KIND[kind].model_validate(obj)
    except ValidationError as error:
        raise ResourceError(f"invalid {kind} {_name_of(obj)!r}: {_describe(error)}") from None


def _name_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return str(name or "<unnamed>")


def _describe(error: ValidationError) -> str:
    """Flatten pydantic's errors into ``path: message; path: message``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in detail['loc']) or '<root>'}: {detail['msg'].removeprefix('Value error, ')}"
        for detail in error.errors(include_url=False)
    )
