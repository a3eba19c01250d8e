"""The operator's configuration: the environment contract of the Helm chart, and kopf's settings.

The chart's Deployment (``charts/autovision/templates/deployment.yaml``) sets these
variables; this module is the one place that reads them. Values the chart renders
with ``toJson`` (lists, maps) arrive as JSON; empty strings mean "not set".
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Annotated, Any, Literal

import kopf
from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from autovision.contract import env
from autovision.resources import LocalObjectReference, Toleration
from autovision.settings import Settings, split_commas
from autovision.storage import StorageError, split_uri

# kopf's watch requests have no timeouts by default, and a watch connection can
# stop delivering events without ever closing (kopf issue #585): the operator then
# looks alive and does nothing. The server closes each watch after this long and
# kopf reconnects, resuming from the last resourceVersion; the client gives up a
# little later, catching connections that died silently.
WATCH_SERVER_TIMEOUT_SECONDS = 270.0
WATCH_CLIENT_TIMEOUT_SECONDS = 300.0
CONNECT_TIMEOUT_SECONDS = 30.0
# A resource deleted while its timer runs keeps kopf's finalizer until the timer
# returns; kopf checks again after this long (its default is a minute).
TIMER_EXIT_POLLING_SECONDS = 1.0
# Where kopf keeps its own bookkeeping on our resources: annotations under our
# domain, not ``status.kopf`` (the CRDs' structural schemas would prune it).
ANNOTATION_PREFIX = "autovision.dev"
FINALIZER = "autovision.dev/artifacts"
# NVIDIA's official Triton image (ONNX Runtime and Python backends), pinned: a
# serving pod must not change its server under a running model on a re-pull.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:26.06-py3"


class OperatorConfig(Settings):
    """Everything the operator needs to know about its installation, from ``AUTOVISION_*``.

    The storage settings are the core's (``Settings``): one name and one default per
    variable in the whole process. The chart sets the storage root and the import
    schemes explicitly; the operator passes both on to every Job it builds.
    """

    namespace: str = Field(default="default", description="The operator's own namespace (the release namespace).")
    watch_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Namespaces to reconcile, comma-separated; empty means all namespaces."
    )
    liveness_endpoint: str | None = Field(
        default=None, description="kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz."
    )
    metrics_port: int | None = Field(
        default=8081, description="Port of the Prometheus metrics endpoint; unset disables it."
    )
    storage_secret: str | None = Field(
        default=None,
        description="Secret (in the operator's namespace) with the operator's own AWS_* storage credentials.",
    )
    trainer_image: str = Field(description="Image of the import and training Jobs.")
    trainer_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    triton_image: str = Field(default=TRITON_IMAGE, description="Image of the Triton server in serving pods.")
    gateway_image: str | None = Field(
        default=None,
        description="Image of the AutoML JSON gateway beside Triton; empty means the trainer image, "
        "which ships the autovision package and its serving extras.",
    )
    serving_service_account: str = Field(
        default="autovision-serving",
        description="ServiceAccount the serving pods of a ModelDeployment with spec.auth.requireToken run as: "
        "allowed to create TokenReviews and SubjectAccessReviews (the chart creates it, and binds it, in the "
        "namespaces of servingAuth.namespaces).",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(default=[], description="Pull secrets of every Job pod.")
    gpu_node_selector: dict[str, str] = Field(default={}, description="Node selector of GPU pods a spec leaves empty.")
    gpu_tolerations: list[Toleration] = Field(default=[], description="Tolerations of GPU pods a spec leaves empty.")
    poll_interval_seconds: float = Field(default=10.0, gt=0, description="How often running Jobs are read back.")
    retry_delay_seconds: float = Field(default=10.0, gt=0, description="First delay before retrying a bad reference.")
    retry_delay_max_seconds: float = Field(default=300.0, gt=0, description="Longest delay between such retries.")

    @field_validator(
        "s3_endpoint_url", "storage_secret", "liveness_endpoint", "metrics_port", "gateway_image", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """Helm renders an unset value as an empty string."""
        return None if value == "" else value

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return split_commas(value)

    @model_validator(mode="after")
    def _known_storage(self) -> OperatorConfig:
        """Fail at start-up, with one message, on a storage root that is unset or no component can use."""
        if "storage_root" not in self.model_fields_set:
            raise ValueError(f"{env.STORAGE_ROOT} is required: the root URI of datasets and runs")
        try:
            split_uri(self.storage_root)
        except StorageError as error:
            raise ValueError(str(error)) from None
        return self

    def storage_settings(self) -> Settings:
        """The core's settings alone, for the operator's own reads of results and progress.

        A handler never waits out an outage inside itself (it would hold a kopf worker
        for minutes): one attempt, then Ready=False and kopf's backoff retry it.
        """
        fields = {name: getattr(self, name) for name in Settings.model_fields}
        return Settings(**(fields | {"storage_retry_seconds": 0.0}))

    @property
    def serving_gateway_image(self) -> str:
        """The gateway's image: its own if configured, else the trainer image."""
        return self.gateway_image or self.trainer_image

    def retry_delay(self, retry: int) -> float:
        """Exponential backoff for waiting on a bad reference: 1x, 2x, 4x ... up to the cap."""
        return float(min(self.retry_delay_seconds * 2 ** min(retry, 16), self.retry_delay_max_seconds))


def peering_priority(pod_id: str | None) -> int:
    """A priority distinct per replica: kopf pauses every peer sharing the highest one.

    Derived from the pod name (the chart sets POD_ID), so a restarted pod keeps it;
    a process without one draws a random priority.
    """
    seed = pod_id or uuid.uuid4().hex
    return int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 32768


def kopf_settings(config: OperatorConfig) -> kopf.OperatorSettings:
    """kopf's settings for a production operator; see the constants above for the reasons."""
    settings = kopf.OperatorSettings()
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS
    settings.watching.connect_timeout = CONNECT_TIMEOUT_SECONDS
    settings.networking.connect_timeout = CONNECT_TIMEOUT_SECONDS
    settings.background.cancellation_polling = TIMER_EXIT_POLLING_SECONDS
    # Several replicas elect one active operator through KopfPeering objects of this
    # name; without the peering CRDs installed, kopf runs standalone with a warning.
    settings.peering.name = "autovision"
    settings.peering.clusterwide = not config.watch_namespaces
    settings.peering.priority = peering_priority(os.environ.get("POD_ID"))
    # Only the events the handlers post on purpose (kopf.info/warn), not every log line.
    settings.posting.loggers = False
    settings.posting.reporting_component = "autovision-operator"
    settings.posting.event_name_prefix = "autovision-"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    # The chart grants no list/watch on CRDs or namespaces: serve what exists at
    # start-up, without warnings about the missing permissions.
    settings.scanning.disabled = True
    return settings
