"""The operator's shared steps (``reconcile``) and the shape of the package around them."""

from __future__ import annotations

import ast
import asyncio
import graphlib
from pathlib import Path
from typing import Any

import pytest

import autovision_operator
from autovision.resources import API_VERSION, Dataset, TrainingJob
from autovision_operator.kube import Kube
from autovision_operator.reconcile import NotReadyError, referenced
from tests.support.kube import (
    NAMESPACE,
    ApiServer,
    Cluster,
)

PACKAGE = Path(autovision_operator.__file__).parent
MODULES = {f"{PACKAGE.name}.{path.stem}" for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def _imported(path: Path) -> set[str]:
    """The package's modules a module imports, anywhere in it (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE.name + (f".{node.module}" if node.module else "") if node.level else str(node.module)
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found & MODULES - {f"{PACKAGE.name}.{path.stem}"}


def test_no_module_of_the_operator_imports_one_that_imports_it_back() -> None:
    graph = {f"{PACKAGE.name}.{path.stem}": _imported(path) for path in PACKAGE.glob("*.py")}
    assert f"{PACKAGE.name}.reconcile" in graph[f"{PACKAGE.name}.serving_handlers"]  # the walk sees imports
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")
    assert set(order) >= MODULES


def _resource(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


@pytest.mark.asyncio
@pytest.mark.kmock(cls=ApiServer)
@pytest.mark.timeout(60)
async def test_a_reference_is_waited_for_until_it_exists_and_parses(cluster: Cluster) -> None:
    """One way to read what a resource names: missing is <Kind>NotFound, unusable is the caller's reason."""
    kube = Kube.connect()

    def run(name: str) -> TrainingJob:
        return referenced(kube, TrainingJob, NAMESPACE, name, not_ready="ModelNotReady")

    async def wait_reason(name: str) -> NotReadyError:
        with pytest.raises(NotReadyError) as raised:
            await asyncio.to_thread(run, name)
        return raised.value

    missing = await wait_reason("flowers-run")
    assert missing.reason == "TrainingJobNotFound"
    assert missing.message == f"TrainingJob flowers-run not found in {NAMESPACE}"

    await cluster.apply("trainingjobs", _resource("TrainingJob", "broken", {}))
    invalid = await wait_reason("broken")
    assert invalid.reason == "ModelNotReady"
    assert "invalid" in invalid.message

    source = {"source": "s3://autovision/flowers.zip"}
    await cluster.apply("trainingjobs", _resource("Dataset", "misfiled", source))
    misfiled = await wait_reason("misfiled")
    assert (misfiled.reason, misfiled.message) == ("ModelNotReady", "misfiled is not a TrainingJob")

    await cluster.apply("datasets", _resource("Dataset", "flowers", source))
    dataset = await asyncio.to_thread(referenced, kube, Dataset, NAMESPACE, "flowers", not_ready="DatasetNotReady")
    assert (dataset.metadata.name, dataset.spec.source) == ("flowers", source["source"])
