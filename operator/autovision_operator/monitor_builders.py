"""Pure builders of a ModelDeployment's drift check (``spec.monitoring``): its CronJob, and the ``Drift``
condition read from the check's report.

The CronJob runs ``autovision monitor`` (``autovision.monitor``) in the serving
image on ``spec.monitoring.schedule``: it compares the last ``windowMinutes`` of
the deployment's prediction log with the primary model's test split and writes
``drift/latest.json`` under the log's prefix, which the operator reads back
into the ``Drift`` condition and the drift gauges. A check needs NumPy and
storage only: no GPU, a small CPU and memory request, one run at a time.
Nothing here talks to a server.
"""

from __future__ import annotations

from typing import Any, Final

from autovision.contract import env
from autovision.contract.files import DriftReport
from autovision.resources import ConditionStatus, ModelDeployment, MonitoringSpec
from autovision_operator.builders import (
    RUNAS_ID,
    bounded_name,
    labels,
    owner_reference,
    restricted_security_context,
    secret_env_from,
)
from autovision_operator.config import OperatorConfig
from autovision_operator.serving_builders import serving_name
from autovision_operator.status import Cond

COMPONENT: Final = "monitor"
CONTAINER: Final = "monitor"
COMMAND: Final = ("python", "-m", "autovision", "monitor")
DRIFT: Final = "Drift"
# Kubernetes appends 11 characters (a timestamp) to a CronJob's name for its Jobs, which must stay within 63.
MAX_CRONJOB_NAME = 52
# Finished check Jobs kept for `kubectl logs`; older ones are deleted by the CronJob controller.
KEPT_JOBS = 3
# A check that has not finished after this long is stuck (storage unreachable): its Job is stopped.
CHECK_DEADLINE_SECONDS = 900


def monitor_name(deployment: ModelDeployment) -> str:
    """The CronJob's name: the serving name with ``-monitor``, short enough for its Jobs' names."""
    return bounded_name(serving_name(deployment), COMPONENT, MAX_CRONJOB_NAME)


def monitor_args(deployment: ModelDeployment, monitoring: MonitoringSpec, model_uri: str) -> list[str]:
    """``autovision monitor``'s arguments: the model, the deployment's log and the thresholds."""
    args = [
        model_uri,
        f"--deployment={deployment.metadata.name}",
        f"--namespace={deployment.metadata.namespace}",
        f"--window-minutes={monitoring.window_minutes}",
        f"--alpha={monitoring.alpha:g}",
    ]
    return [*args, f"--model-name={monitoring.model_name}"] if monitoring.model_name else args


def build_monitor_cronjob(
    deployment: ModelDeployment, model_uri: str, config: OperatorConfig, secret: str | None
) -> dict[str, Any]:
    """The batch/v1 CronJob that checks ``model_uri``'s deployment for drift on ``spec.monitoring.schedule``."""
    monitoring = deployment.spec.monitoring
    if monitoring is None:
        raise ValueError(f"ModelDeployment {deployment.metadata.name} has no spec.monitoring")
    variables = [
        {"name": env.STORAGE_ROOT, "value": config.storage_root},
        {"name": "HOME", "value": "/tmp"},
        {"name": "XDG_CACHE_HOME", "value": "/tmp/.cache"},
    ]
    if config.s3_endpoint_url:
        variables.append({"name": env.S3_ENDPOINT_URL, "value": config.s3_endpoint_url})
    container = {
        "name": CONTAINER,
        "image": config.serving_gateway_image,
        "imagePullPolicy": config.trainer_image_pull_policy,
        "command": list(COMMAND),
        "args": monitor_args(deployment, monitoring, model_uri),
        "env": variables,
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": restricted_security_context(RUNAS_ID),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **secret_env_from(secret),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [item.model_dump(mode="json") for item in config.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": monitor_name(deployment),
            "namespace": deployment.metadata.namespace,
            "labels": labels(COMPONENT, deployment),
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {
            "schedule": monitoring.schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": KEPT_JOBS,
            "failedJobsHistoryLimit": KEPT_JOBS,
            "jobTemplate": {
                "metadata": {"labels": labels(COMPONENT, deployment)},
                "spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": CHECK_DEADLINE_SECONDS,
                    "template": {"metadata": {"labels": labels(COMPONENT, deployment)}, "spec": pod_spec},
                },
            },
        },
    }


_VERDICTS: Final = {
    "Drift": (ConditionStatus.TRUE, "DriftDetected"),
    "NoDrift": (ConditionStatus.FALSE, "NoDrift"),
    "Unknown": (ConditionStatus.UNKNOWN, "TooLittleTraffic"),
}


def drift_condition(report: DriftReport | None, problem: str = "") -> Cond:
    """The Drift condition: True on drift, False on none, Unknown with no verdict (too little traffic, no check
    yet, or ``problem``: why the report or the check cannot be had)."""
    if problem:
        return Cond(DRIFT, ConditionStatus.UNKNOWN, "CheckUnavailable", problem)
    if report is None:
        return Cond(DRIFT, ConditionStatus.UNKNOWN, "NotCheckedYet", "no drift check has finished yet")
    status, reason = _VERDICTS.get(report.status, (ConditionStatus.UNKNOWN, "UnknownVerdict"))
    message = (
        f"{report.reason} ({report.predictions} logged predictions from {report.window_start} to "
        f"{report.window_end} against {report.reference_predictions} test images)"
    )
    return Cond(DRIFT, status, reason, message)
