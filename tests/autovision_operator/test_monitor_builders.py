"""The drift check's CronJob (spec.monitoring) and the Drift condition read from its report."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from autovision.contract import env
from autovision.contract.files import DriftReport, DriftTest
from autovision.resources import ConditionStatus, ModelDeployment, ResourceError, parse_resource
from autovision_operator import monitor_builders as mb
from autovision_operator.builders import restricted_security_context
from tests.support.operator import make_config

K8S_VERSION = kubernetes_validate.latest_version()
MODEL_DIR = "s3://autovision/runs/ml/flowers-run/0f1e/model"


def model_deployment(name: str = "flowers", **spec: Any) -> ModelDeployment:
    deployment = parse_resource(
        {
            "apiVersion": "autovision.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "ml", "uid": "uid-md"},
            "spec": {"modelRef": {"trainingJob": "flowers-run"}, **spec},
        }
    )
    assert isinstance(deployment, ModelDeployment)
    return deployment


def report(status: str, predictions: int = 200) -> DriftReport:
    return DriftReport(
        status=status,
        reason="drift in confidence" if status == "Drift" else "no test rejects",
        window_start="2026-12-04T11:00:00+00:00",
        window_end="2026-12-04T12:00:00+00:00",
        model="flowers-run",
        predictions=predictions,
        reference_predictions=400,
        threshold=0.05 / 3,
        tests=[DriftTest(aspect="confidence", method="Kolmogorov-Smirnov", statistic=0.4, p_value=1e-9, drift=True)],
    )


def test_the_cronjob_is_valid_owned_restricted_and_runs_the_check_on_schedule() -> None:
    monitoring = {"schedule": "@hourly", "windowMinutes": 90, "alpha": 0.01, "modelName": "flowers-run"}
    config = make_config(s3_endpoint_url="http://seaweedfs.storage:8333")

    built = mb.build_monitor_cronjob(model_deployment(monitoring=monitoring), MODEL_DIR, config, "s3-credentials")

    kubernetes_validate.validate(built, K8S_VERSION, True)
    assert built["metadata"]["name"] == "flowers-monitor"
    assert built["metadata"]["ownerReferences"][0]["uid"] == "uid-md"
    assert (built["spec"]["schedule"], built["spec"]["concurrencyPolicy"]) == ("@hourly", "Forbid")
    pod = built["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "autovision", "monitor"]
    assert container["args"] == [
        MODEL_DIR,
        "--deployment=flowers",
        "--namespace=ml",
        "--window-minutes=90",
        "--alpha=0.01",
        "--model-name=flowers-run",
    ]
    assert container["securityContext"] == restricted_security_context(container["securityContext"]["runAsUser"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["restartPolicy"] == "Never"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert {"name": env.STORAGE_ROOT, "value": config.storage_root} in container["env"]
    assert {"name": env.S3_ENDPOINT_URL, "value": "http://seaweedfs.storage:8333"} in container["env"]


def test_a_long_name_leaves_room_for_the_jobs_timestamp() -> None:
    name = mb.monitor_name(model_deployment("f" * 63, monitoring={}))
    assert len(name) <= 52
    assert name.endswith("-monitor")


def test_bad_monitoring_specs_are_refused() -> None:
    for monitoring in ({"schedule": "every hour"}, {"windowMinutes": 0}, {"alpha": 0.9}):
        with pytest.raises(ResourceError):
            model_deployment(monitoring=monitoring)
    with pytest.raises(ValueError, match=r"has no spec\.monitoring"):
        mb.build_monitor_cronjob(model_deployment(), MODEL_DIR, make_config(), None)


@pytest.mark.parametrize(
    ("verdict", "status", "reason"),
    [
        ("Drift", ConditionStatus.TRUE, "DriftDetected"),
        ("NoDrift", ConditionStatus.FALSE, "NoDrift"),
        ("Unknown", ConditionStatus.UNKNOWN, "TooLittleTraffic"),
    ],
)
def test_the_drift_condition_follows_the_verdict(verdict: str, status: ConditionStatus, reason: str) -> None:
    condition = mb.drift_condition(report(verdict))

    assert (condition.type, condition.status, condition.reason) == ("Drift", status, reason)
    assert "200 logged predictions from 2026-12-04T11:00:00+00:00" in condition.message


def test_no_report_or_an_unreadable_one_is_unknown_never_no_drift() -> None:
    assert mb.drift_condition(None).status is ConditionStatus.UNKNOWN
    assert mb.drift_condition(None).reason == "NotCheckedYet"
    broken = mb.drift_condition(None, "storage is down")
    assert (broken.status, broken.reason, broken.message) == (
        ConditionStatus.UNKNOWN,
        "CheckUnavailable",
        "storage is down",
    )
