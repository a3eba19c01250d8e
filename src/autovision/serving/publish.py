"""A run's two Triton repositories (local and cluster layouts), written and uploaded under the run's prefix."""

from __future__ import annotations

from pathlib import Path

from autovision.contract.keys import TRITON_CLUSTER, TRITON_LOCAL, RunLocation, triton_key
from autovision.preprocess import PreprocessConfig
from autovision.serving.cluster import write_cluster_repository
from autovision.serving.repository import DecodeBudget, write_local_repository
from autovision.storage import Storage


def write_triton_repositories(
    storage: Storage,
    run: RunLocation,
    onnx_path: Path,
    labels: list[str],
    *,
    preprocess: PreprocessConfig,
    multi_label: bool,
    workdir: Path,
) -> None:
    """Both Triton layouts, each replacing whatever a previous attempt left under its prefix."""
    budget = DecodeBudget.from_settings(storage.settings)
    write_local_repository(
        workdir / TRITON_LOCAL, onnx_path, labels, preprocess, multi_label=multi_label, budget=budget
    )
    write_cluster_repository(
        workdir / TRITON_CLUSTER, onnx_path, labels, preprocess, multi_label=multi_label, budget=budget
    )
    for layout in (TRITON_LOCAL, TRITON_CLUSTER):
        storage.delete_prefix(triton_key(run.prefix, layout))
        storage.upload_dir(workdir / layout, triton_key(run.prefix, layout))
