"""Fixtures of the serving tests: one tiny ONNX classifier per module, backend imports forgotten after each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.serving import (
    LABELS,
    make_onnx_classifier,
)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_onnx_classifier(tmp_path_factory.mktemp("onnx") / "model.onnx", len(LABELS))


@pytest.fixture
def clean_backend_imports() -> Iterator[None]:
    """Forget the repository's sibling modules, which the backends import by bare name."""
    yield
    for name in ("preprocess", "backend_common"):
        sys.modules.pop(name, None)
