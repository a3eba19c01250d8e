"""Process-wide settings, read from the environment (``AUTOVISION_*``).

Credentials never appear in resource specs or command lines: they come from the
environment, which in a cluster is filled from a Secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from autovision.contract import env
from autovision.preprocess import DEFAULT_DECODE_MEMORY_BYTES, PILLOW_MAX_PIXELS, ImageLimits
from autovision.serving.traffic import Routes

# Every scheme the importer can read. A cluster leaves out file (the pod's own disk is
# never a user's data), and may leave out http and https (requests from inside the cluster).
IMPORT_URI_SCHEMES = ("s3", "file", "http", "https")
# Attempts botocore makes for one S3 request before the error reaches autovision.storage.
S3_REQUEST_ATTEMPTS = 3


class Settings(BaseSettings):
    """Where AutoVision keeps its data and how it reaches S3."""

    model_config = SettingsConfigDict(env_prefix=env.PREFIX, extra="ignore", populate_by_name=True)

    storage_root: str = Field(
        default="file://.autovision/storage",
        description="Root URI of all datasets and runs: file://PATH or s3://BUCKET/PREFIX.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(env.S3_ENDPOINT_URL, env.AWS_ENDPOINT_URL),
        description="S3 endpoint, e.g. http://127.0.0.1:8333 for SeaweedFS; None means AWS.",
    )
    s3_access_key_id: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(env.S3_ACCESS_KEY_ID, env.AWS_ACCESS_KEY_ID),
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(env.S3_SECRET_ACCESS_KEY, env.AWS_SECRET_ACCESS_KEY),
    )
    s3_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices(env.S3_REGION, env.AWS_DEFAULT_REGION),
    )
    storage_retry_seconds: float = Field(
        default=180.0,
        ge=0,
        description="How long one storage operation keeps retrying while storage is unreachable, throttled "
        "or failing with 5xx, before the process gives up with a temporary failure (the Job retries the pod).",
    )
    max_image_bytes: int = Field(
        default=ImageLimits().max_bytes,
        ge=1,
        description="Largest encoded image, in bytes, that import, serving and batch prediction accept.",
    )
    max_image_pixels: int = Field(
        default=ImageLimits().max_pixels,
        ge=1,
        le=2 * PILLOW_MAX_PIXELS,
        description="Most pixels (width x height, read from the header before decoding) an image may have.",
    )
    decode_memory_bytes: int = Field(
        default=DEFAULT_DECODE_MEMORY_BYTES,
        ge=1,
        description="Memory each decoding process (Triton's Python backend, batch prediction) may spend on "
        "decoded images; with the pixel limit it fixes how many images decode at once. Written into Triton "
        "repositories when a run exports.",
    )
    training_memory_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Memory a trial's decoded training images may take: a split that fits is decoded once into "
        "a cache, a larger one is streamed from the shards every epoch. Unset: half of the memory the process may "
        "use (its cgroup's limit, else the machine's memory).",
    )
    gateway_max_concurrency: int = Field(
        default=4, ge=1, description="Requests the AutoML JSON gateway reads and forwards to Triton at once."
    )
    gateway_max_queue: int = Field(
        default=32, ge=0, description="Requests that wait for a gateway slot; beyond them the gateway answers 503."
    )
    gateway_body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A request body not received within this time is dropped (408)."
    )
    gateway_upstream_timeout_seconds: float = Field(
        default=30.0, gt=0, description="Longest wait for Triton's answer before the gateway answers 503."
    )
    gateway_require_token: bool = Field(
        default=False,
        description="Answer only callers whose bearer token a Kubernetes TokenReview accepts and whom a "
        "SubjectAccessReview allows to create the predict subresource of the served ModelDeployment "
        "(set by the operator from spec.auth.requireToken; off locally).",
    )
    gateway_explainer_url: str | None = Field(
        default=None,
        description="The explainer's base URL, to which the gateway forwards :explain (set by the operator from "
        "spec.explain, by autovision serve --explain); unset, :explain answers 404.",
    )
    gateway_deployment_name: str | None = Field(
        default=None, description="The ModelDeployment a gateway serves, whose predict permission callers need."
    )
    gateway_deployment_namespace: str | None = Field(
        default=None, description="The namespace of the ModelDeployment a gateway serves."
    )
    gateway_routes: Routes | None = Field(
        default=None,
        description="The models behind a gateway and their split, as JSON (autovision.serving.traffic.Routes; "
        "written by the operator from spec.traffic); unset, the gateway serves its --triton-url's one model.",
    )
    gateway_log_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Fraction of prediction requests the gateway logs to storage under "
        "predictions/<namespace>/<deployment>/ (set by the operator from spec.logging.rate, by autovision serve "
        "--log-rate); 0 logs nothing.",
    )
    gateway_log_images: bool = Field(
        default=False,
        description="Also store each logged request's image, once per sha256 (spec.logging.images, --log-images).",
    )
    import_uri_schemes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=IMPORT_URI_SCHEMES,
        description="URI schemes an import may read, its source and a CSV index's rows alike; comma-separated. "
        "The local runtime reads all of them; a cluster's operator passes its own list to every Job.",
    )

    @field_validator("import_uri_schemes", mode="before")
    @classmethod
    def _split_schemes(cls, value: Any) -> Any:
        return split_commas(value)

    @field_validator("import_uri_schemes")
    @classmethod
    def _known_schemes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return known_import_uri_schemes(value)

    def image_limits(self) -> ImageLimits:
        """The one image policy these settings give."""
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    def s3_options(self) -> dict[str, object]:
        """Keyword arguments for s3fs built from these settings."""
        options: dict[str, object] = {
            "client_kwargs": {"region_name": self.s3_region},
            # botocore absorbs a request's blips itself (standard mode: connection errors, 5xx,
            # throttling, with jitter); autovision.storage bounds the total time of an outage.
            "config_kwargs": {"retries": {"mode": "standard", "max_attempts": S3_REQUEST_ATTEMPTS}},
        }
        if self.s3_endpoint_url:
            options["endpoint_url"] = self.s3_endpoint_url
        if self.s3_access_key_id and self.s3_secret_access_key:
            options["key"] = self.s3_access_key_id.get_secret_value()
            options["secret"] = self.s3_secret_access_key.get_secret_value()
        return options


def split_commas(value: Any) -> Any:
    """A comma-separated environment value as a tuple of its non-empty parts; anything else as it is."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def uri_prefixes(schemes: Sequence[str]) -> str:
    """Schemes as a message lists them: "s3://, https://"."""
    return ", ".join(f"{scheme}://" for scheme in schemes)


def known_import_uri_schemes(schemes: tuple[str, ...]) -> tuple[str, ...]:
    """The schemes in lower case, or a ValueError naming any the importer cannot read (fails at start-up)."""
    lowered = tuple(scheme.lower() for scheme in schemes)
    unknown = sorted(set(lowered) - set(IMPORT_URI_SCHEMES))
    if unknown:
        raise ValueError(f"unknown URI scheme(s) {', '.join(unknown)}: choose from {', '.join(IMPORT_URI_SCHEMES)}")
    return lowered
