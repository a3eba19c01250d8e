"""Shared fixtures (a real S3 endpoint, SeaweedFS; the bundled digits zip) and the markers set from them.

A test that starts SeaweedFS through ``embedded_s3``/``s3_storage`` (or the ``s3`` run of
``storage``) is marked ``seaweedfs`` here, and one against KMock ``kopf``: the fixtures say
it more reliably than a hand-written marker. ``PENDING_MARKERS`` marks the tests of files
that have not moved into the tree yet; they carry their markers themselves once they move.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovision.contract.files import ModelCard
from autovision.data.digits import write_digits_zip
from autovision.embedded_s3 import EmbeddedS3
from autovision.export.layout import ModelLocation
from autovision.storage import Storage
from tests.support.images import flat_png_bytes, png_claiming
from tests.support.memory import ScaleDatasets, import_versions

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SEAWEEDFS_FIXTURES = {"embedded_s3", "s3_storage"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start a server from the fixtures they use."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if fixtures & SEAWEEDFS_FIXTURES or ("storage" in fixtures and params.get("storage") == "s3"):
            item.add_marker(pytest.mark.seaweedfs)
        if item.get_closest_marker("kmock") is not None:
            item.add_marker(pytest.mark.kopf)


@pytest.fixture(scope="session", autouse=True)
def children_answer_ctrl_c() -> None:
    """Subprocesses that tests interrupt with SIGINT must react to it as from a terminal.

    A shell without job control (a CI script, ``cmd &``) starts background
    commands with SIGINT ignored, and an ignored signal stays ignored in every
    child: Python would then never raise KeyboardInterrupt there. A handler set
    here is reset to the default in children.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def embedded_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """One real SeaweedFS S3 endpoint on 127.0.0.1 for the whole test session."""
    with EmbeddedS3(tmp_path_factory.mktemp("seaweedfs")) as s3:
        yield s3


@pytest.fixture
def s3_storage(embedded_s3: EmbeddedS3, request: pytest.FixtureRequest) -> Storage:
    """Storage under a fresh prefix of the session's S3 bucket."""
    return Storage.from_settings(embedded_s3.settings(prefix=request.node.name.replace("[", "-").strip("]")))


@pytest.fixture
def file_storage(tmp_path: Path) -> Storage:
    return Storage(f"file://{tmp_path / 'storage'}")


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each storage test runs on both backends."""
    return request.getfixturevalue(f"{request.param}_storage")  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def digits_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits_zip(tmp_path_factory.mktemp("data") / "digits.zip")


@pytest.fixture(scope="session")
def explained_run(tmp_path_factory: pytest.TempPathFactory, model_card: ModelCard) -> ModelLocation:
    """A finished run of a tiny residual CNN with every file the explainer and ``autovision serve`` read
    (exported once a session: the export costs seconds)."""
    from tests.support.explainer import write_model_dir

    return write_model_dir(tmp_path_factory.mktemp("explained-run"), model_card)


@pytest.fixture(scope="session")
def model_card() -> ModelCard:
    """A valid model card, for tests of what reads one (copy it with ``model_copy(update=...)``)."""
    return ModelCard.model_validate(
        {
            "task": "SingleLabel",
            "architecture": {"family": "residual_cnn"},
            "training": {"epochs": 3},
            "inputSize": 32,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "preprocessing": "decode, resize",
            "labels": ["a", "b"],
            "dataset": {"name": "d", "version": "sha256-ab"},
            "metrics": {
                "testAccuracy": 0.5,
                "testAveragePrecision": 0.6,
                "testLogLoss": 0.7,
                "int8TestAccuracy": 0.5,
                "scoreThreshold": 0.5,
                "validationMetric": "validationAccuracy",
                "validationValue": 0.6,
                "validationAccuracy": 0.6,
                "bestEpoch": 2,
                "epochsTrained": 3,
                "latencyMs": 1.5,
                "parameters": 1000,
            },
            "exports": {"onnx": {"file": "model.onnx"}},
            "parity": {},
            "search": {"chosenTrial": 0},
            "finalFit": {"trial": 0, "retrained": True, "seconds": 1.0},
            "milliNodeHoursUsed": 3,
            "budgetMilliNodeHours": 10,
            "trainingSeconds": 9.5,
            "artifacts": {"model": "file:///m"},
        }
    )


@pytest.fixture(scope="session")
def claimed_png() -> Callable[[int, int], bytes]:
    """``png_claiming`` for tests: a tiny PNG whose header claims any size."""
    return png_claiming


@pytest.fixture(scope="session")
def flat_png() -> Callable[..., bytes]:
    """``flat_png_bytes`` for tests."""
    return flat_png_bytes


@pytest.fixture(scope="session")
def photo_jpeg() -> Callable[[int, int], bytes]:
    """A JPEG with photo-like detail (smooth gradients plus noise) of any size."""

    def make(width: int, height: int) -> bytes:
        rng = np.random.default_rng(width * height)
        ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
        rows = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
        pixels = (ramp * [1.0, 0.5, 0.2] + rows * [0.0, 0.5, 0.8]) / 1.5
        pixels += rng.normal(0, 12, size=(height, width, 1)).astype(np.float32)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    return make


@pytest.fixture(scope="session")
def scale_datasets(tmp_path_factory: pytest.TempPathFactory) -> ScaleDatasets:
    """Versions of 2,000 and 20,000 tiny images, imported once for the peak-memory tests of every module."""
    return import_versions(tmp_path_factory.mktemp("scale"))
