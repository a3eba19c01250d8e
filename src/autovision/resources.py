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


# --- TrainingJob ------------------------------------------------------------


class OptimizeFor(StrEnum):
    """The trade-off the architecture search optimises."""

    BALANCED = "Balanced"
    LOW_LATENCY = "LowLatency"
    HIGH_ACCURACY = "HighAccuracy"


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


class TrainingJobSpec(WireModel):
    """What to train on and how much it may cost."""

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
    optimize_for: OptimizeFor = Field(
        default=OptimizeFor.BALANCED, description="Balanced, LowLatency (smaller, faster models) or HighAccuracy."
    )
    early_stopping: bool = Field(
        default=True, description="Stop before the budget is spent when the search stops improving."
    )
    resources: TrainingResources = Field(default=TrainingResources(), description="Nodes and GPUs the search runs on.")
    deploy: DeployOptions | None = Field(default=None, description="When set, deploy the best model after training.")
    artifact_policy: ArtifactPolicy = Field(
        default=ArtifactPolicy.RETAIN,
        description="Retain or Delete the run's stored artifacts when the TrainingJob is deleted.",
    )
    backbones: list[Backbone] = Field(
        default=[],
        description="Backbones with the user's own weights that the search may pick besides the built-in ones.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

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


class ModelDeploymentSpec(WireModel):
    """Which model to serve, on how many nodes."""

    model_ref: ModelRef = Field(description="The model to serve.")
    nodes: int = Field(default=1, ge=1, description="Serving replicas; the scale subresource sets this.")
    autoscaling: Autoscaling | None = Field(
        default=None, description="When set, an autoscaler adjusts the replicas within these bounds."
    )
    score_threshold: float = Field(
        default=0.5, ge=0, le=1, description="Predictions scoring below this are left out of responses."
    )
    auth: ServingAuth = Field(default=ServingAuth(), description="Token checks of prediction requests.")


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


class ModelDeploymentStatus(ResourceStatus):
    """What is being served and how much of it is ready."""

    nodes: Count = Field(default=0, description="Serving replicas that exist.")
    ready_nodes: Count = Field(default=0, description="Serving replicas ready for traffic.")
    selector: str | None = Field(
        default=None, description="Label selector of the serving pods, for the scale subresource."
    )
    model_version: str | None = Field(default=None, description="Version of the model being served.")
    endpoints: Endpoints | None = Field(default=None, description="Where to send predictions.")


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
    spec: ModelDeploymentSpec = Field(description="Desired state: what to serve, how widely.")
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
