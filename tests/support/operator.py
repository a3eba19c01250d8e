"""Operator inputs the builder tests start from: the operator's configuration and a Dataset."""

from __future__ import annotations

from typing import Any

from autovision.resources import Dataset, parse_resource
from autovision_operator.config import OperatorConfig


def make_config(**overrides: Any) -> OperatorConfig:
    values: dict[str, Any] = {
        "namespace": "autovision-system",
        "storage_root": "s3://autovision",
        "import_uri_schemes": "s3,http,https",  # as the chart sets it (importUriSchemes)
        "trainer_image": "ghcr.io/autovision/trainer:0.1.0",
        "gpu_node_selector": {"nvidia.com/gpu.present": "true"},
        "gpu_tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    return OperatorConfig(**(values | overrides))


def make_dataset(namespace: str = "ml", secret: str | None = "s3-credentials", version: str | None = None) -> Dataset:
    spec: dict[str, Any] = {"source": "s3://bucket/flowers.zip", "split": {"train": 70, "validation": 20, "test": 10}}
    if secret:
        spec["storageSecretRef"] = {"name": secret}
    obj = {
        "apiVersion": "autovision.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "flowers", "namespace": namespace, "uid": "uid-dataset"},
        "spec": spec,
        "status": {"version": version} if version else {},
    }
    dataset = parse_resource(obj)
    assert isinstance(dataset, Dataset)
    return dataset
