"""Fixtures of the kopf tests: the operator's configuration and KMock serving the cluster's API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autovision_operator.config import OperatorConfig
from tests.support.kube import Cluster, declare_resources, write_kubeconfig


@pytest.fixture(name="operator_config")
def operator_config_fixture(tmp_path: Path) -> OperatorConfig:
    """The operator's configuration, with short poll and retry intervals."""
    return OperatorConfig(
        storage_root=f"file://{tmp_path / 'storage'}",
        trainer_image="ghcr.io/autovision/trainer:test",
        poll_interval_seconds=0.2,
        retry_delay_seconds=0.2,
        retry_delay_max_seconds=0.5,
        metrics_port=None,
    )


@pytest.fixture(name="cluster")
def cluster_fixture(kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """KMock serving the Kubernetes and AutoVision APIs, and $KUBECONFIG pointing at it."""
    declare_resources(kmock)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/"))))
    return Cluster()
