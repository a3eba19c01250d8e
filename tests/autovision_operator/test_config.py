"""The operator's configuration: the chart's environment and the kopf settings made from it."""

from __future__ import annotations

import kopf
import pytest

from autovision_operator.config import (
    WATCH_CLIENT_TIMEOUT_SECONDS,
    WATCH_SERVER_TIMEOUT_SECONDS,
    OperatorConfig,
    kopf_settings,
)


def test_chart_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = {
        "AUTOVISION_NAMESPACE": "autovision-system",
        "AUTOVISION_WATCH_NAMESPACES": "ml, vision",
        "AUTOVISION_LIVENESS_ENDPOINT": "http://0.0.0.0:8080/healthz",
        "AUTOVISION_STORAGE_ROOT": "s3://autovision",
        "AUTOVISION_S3_ENDPOINT_URL": "http://seaweedfs.storage:8333",
        "AUTOVISION_STORAGE_SECRET": "",
        "AUTOVISION_TRAINER_IMAGE": "ghcr.io/autovision/trainer:0.1.0",
        "AUTOVISION_TRAINER_IMAGE_PULL_POLICY": "Always",
        "AUTOVISION_IMAGE_PULL_SECRETS": '[{"name": "regcred"}]',
        "AUTOVISION_GPU_NODE_SELECTOR": '{"nvidia.com/gpu.present": "true"}',
        "AUTOVISION_GPU_TOLERATIONS": '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]',
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    config = OperatorConfig()
    assert config.watch_namespaces == ("ml", "vision")
    assert config.s3_endpoint_url == "http://seaweedfs.storage:8333"
    assert config.storage_settings().s3_endpoint_url == "http://seaweedfs.storage:8333"
    assert config.storage_secret is None
    assert config.trainer_image_pull_policy == "Always"
    assert config.image_pull_secrets[0].name == "regcred"
    assert config.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert config.gpu_tolerations[0].key == "nvidia.com/gpu"


def test_unknown_storage_fails_at_start_up() -> None:
    with pytest.raises(ValueError, match="unsupported storage URI"):
        OperatorConfig(storage_root="gs://bucket", trainer_image="trainer")


def test_retry_delay_backs_off_up_to_a_cap() -> None:
    config = OperatorConfig(storage_root="s3://b", trainer_image="t", retry_delay_seconds=5, retry_delay_max_seconds=60)
    assert [config.retry_delay(retry) for retry in range(6)] == [5, 10, 20, 40, 60, 60]


def test_kopf_settings_guard_against_silent_watches() -> None:
    settings = kopf_settings(OperatorConfig(storage_root="s3://b", trainer_image="t"))
    assert settings.watching.server_timeout == WATCH_SERVER_TIMEOUT_SECONDS
    assert settings.watching.client_timeout == WATCH_CLIENT_TIMEOUT_SECONDS
    assert settings.watching.server_timeout < settings.watching.client_timeout
    assert settings.peering.name == "autovision"
    assert settings.peering.clusterwide is True
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)


def test_watching_namespaces_peers_per_namespace() -> None:
    settings = kopf_settings(OperatorConfig(storage_root="s3://b", trainer_image="t", watch_namespaces="ml"))
    assert settings.peering.clusterwide is False
