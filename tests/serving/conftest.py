"""Fixtures of the serving tests: one tiny ONNX classifier per module, backend imports forgotten after each test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from autovision.contract import env
from autovision.contract.files import ModelCard
from tests.support.served import GOOGLE_MAX_IMAGE_BYTES, RUN, Endpoints, Run, Served, serve_endpoints, write_run
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


@pytest.fixture(scope="module")
def google_served(tmp_path_factory: pytest.TempPathFactory, model_card: ModelCard) -> Iterator[tuple[Run, Endpoints]]:
    """``autovision serve`` on a finished run of the tiny classifier, its images limited to 64 KiB, logging
    every prediction (so that every Google dialect's use of the log's one hook is seen)."""
    run = write_run(tmp_path_factory.mktemp("google"), model_card)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(env.STORAGE_ROOT, run.storage.uri(""))
        patch.setenv(env.MAX_IMAGE_BYTES, str(GOOGLE_MAX_IMAGE_BYTES))
        patch.setenv(env.GATEWAY_LOG_RATE, "1")
        served = Served(RUN.prefix)
    with served:
        served.wait_until_ready()
        yield run, serve_endpoints(served)
