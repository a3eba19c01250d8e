"""The names of the environment variables AutoVision's processes read.

The core's settings (``autovision.settings``), the operator's configuration and
the Jobs the operator builds all take their names from here; the Helm chart, the
README and the Dockerfiles spell the same names, and a test checks them against
``NAMES``.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "AUTOVISION_"

# Read by every process through autovision.settings.Settings.
STORAGE_ROOT: Final = f"{PREFIX}STORAGE_ROOT"
S3_ENDPOINT_URL: Final = f"{PREFIX}S3_ENDPOINT_URL"
S3_ACCESS_KEY_ID: Final = f"{PREFIX}S3_ACCESS_KEY_ID"
S3_SECRET_ACCESS_KEY: Final = f"{PREFIX}S3_SECRET_ACCESS_KEY"
S3_REGION: Final = f"{PREFIX}S3_REGION"
IMPORT_URI_SCHEMES: Final = f"{PREFIX}IMPORT_URI_SCHEMES"
STORAGE_RETRY_SECONDS: Final = f"{PREFIX}STORAGE_RETRY_SECONDS"
MAX_IMAGE_BYTES: Final = f"{PREFIX}MAX_IMAGE_BYTES"
MAX_IMAGE_PIXELS: Final = f"{PREFIX}MAX_IMAGE_PIXELS"
DECODE_MEMORY_BYTES: Final = f"{PREFIX}DECODE_MEMORY_BYTES"
# Memory a trial's decoded training images may take before the trainer streams them from the shards instead.
TRAINING_MEMORY_BYTES: Final = f"{PREFIX}TRAINING_MEMORY_BYTES"
GATEWAY_MAX_CONCURRENCY: Final = f"{PREFIX}GATEWAY_MAX_CONCURRENCY"
GATEWAY_MAX_QUEUE: Final = f"{PREFIX}GATEWAY_MAX_QUEUE"
GATEWAY_BODY_TIMEOUT_SECONDS: Final = f"{PREFIX}GATEWAY_BODY_TIMEOUT_SECONDS"
GATEWAY_UPSTREAM_TIMEOUT_SECONDS: Final = f"{PREFIX}GATEWAY_UPSTREAM_TIMEOUT_SECONDS"
GATEWAY_REQUIRE_TOKEN: Final = f"{PREFIX}GATEWAY_REQUIRE_TOKEN"
GATEWAY_DEPLOYMENT_NAME: Final = f"{PREFIX}GATEWAY_DEPLOYMENT_NAME"
GATEWAY_DEPLOYMENT_NAMESPACE: Final = f"{PREFIX}GATEWAY_DEPLOYMENT_NAMESPACE"
# The gateway's routing table (autovision.serving.traffic.Routes as JSON), written by the operator.
GATEWAY_ROUTES: Final = f"{PREFIX}GATEWAY_ROUTES"
# Where the gateway forwards :explain (the explainer's base URL); unset, :explain answers 404.
GATEWAY_EXPLAINER_URL: Final = f"{PREFIX}GATEWAY_EXPLAINER_URL"
# The gateway's prediction log (autovision.serving.prediction_log): the fraction of requests
# logged (0 to 1, unset or 0: none) and whether their images are stored too.
GATEWAY_LOG_RATE: Final = f"{PREFIX}GATEWAY_LOG_RATE"
GATEWAY_LOG_IMAGES: Final = f"{PREFIX}GATEWAY_LOG_IMAGES"

# Read by the operator (autovision_operator.config.OperatorConfig), set by the chart.
NAMESPACE: Final = f"{PREFIX}NAMESPACE"
WATCH_NAMESPACES: Final = f"{PREFIX}WATCH_NAMESPACES"
LIVENESS_ENDPOINT: Final = f"{PREFIX}LIVENESS_ENDPOINT"
METRICS_PORT: Final = f"{PREFIX}METRICS_PORT"
STORAGE_SECRET: Final = f"{PREFIX}STORAGE_SECRET"
TRAINER_IMAGE: Final = f"{PREFIX}TRAINER_IMAGE"
TRAINER_IMAGE_PULL_POLICY: Final = f"{PREFIX}TRAINER_IMAGE_PULL_POLICY"
TRITON_IMAGE: Final = f"{PREFIX}TRITON_IMAGE"
GATEWAY_IMAGE: Final = f"{PREFIX}GATEWAY_IMAGE"
SERVING_SERVICE_ACCOUNT: Final = f"{PREFIX}SERVING_SERVICE_ACCOUNT"
IMAGE_PULL_SECRETS: Final = f"{PREFIX}IMAGE_PULL_SECRETS"
GPU_NODE_SELECTOR: Final = f"{PREFIX}GPU_NODE_SELECTOR"
GPU_TOLERATIONS: Final = f"{PREFIX}GPU_TOLERATIONS"
POLL_INTERVAL_SECONDS: Final = f"{PREFIX}POLL_INTERVAL_SECONDS"
RETRY_DELAY_SECONDS: Final = f"{PREFIX}RETRY_DELAY_SECONDS"
RETRY_DELAY_MAX_SECONDS: Final = f"{PREFIX}RETRY_DELAY_MAX_SECONDS"

# The standard AWS names, accepted beside ours for S3 (what boto-style Secrets hold).
AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"
AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"
AWS_DEFAULT_REGION: Final = "AWS_DEFAULT_REGION"

# Set by Kubernetes on an Indexed Job's pods: which node of a search this pod is.
JOB_COMPLETION_INDEX: Final = "JOB_COMPLETION_INDEX"

NAMES: Final = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str) and value != PREFIX
)
"""Every variable named above: what a chart template, the README or a Dockerfile may set."""


def field_variable(field: str) -> str:
    """The variable a settings class reads for one of its fields (pydantic-settings' rule: prefix + upper case)."""
    return f"{PREFIX}{field.upper()}"
