"""Shared fixtures: a real S3 endpoint (SeaweedFS) and the bundled digits zip."""

from __future__ import annotations

import io
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autovision.contract.files import ModelCard
from autovision.data.digits import write_digits_zip
from autovision.embedded_s3 import EmbeddedS3
from autovision.serving.tritonserver import LocalTritonServer
from autovision.storage import Storage

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


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


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = buffer.getvalue()
    header = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + header + struct.pack(">I", zlib.crc32(header)) + data[33:]


@pytest.fixture(scope="session")
def claimed_png() -> Callable[[int, int], bytes]:
    """``png_claiming`` for tests: a tiny PNG whose header claims any size."""
    return png_claiming


def flat_png_bytes(width: int, height: int, mode: str = "RGB") -> bytes:
    """A real PNG of one colour in any mode: large in pixels, small in bytes (a bomb within the limit)."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


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


# Address space each process of a test's tritonserver may map (tritonserver maps about 1.9 GB
# idle, a stub 0.4 GB): a regression that decodes too much fails the test, not the machine.
TRITON_ADDRESS_SPACE_CAP = 4 * 1024**3


class CappedTritonServer(LocalTritonServer):
    """tritonserver and its backend stubs under a hard ``prlimit --as`` cap."""

    def command(self, triton_dir: Path, backend_dir: Path) -> list[str]:
        return ["prlimit", f"--as={TRITON_ADDRESS_SPACE_CAP}", "--", *super().command(triton_dir, backend_dir)]


def peak_rss_bytes(pid: int) -> int:
    """A process's peak resident memory so far (VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    kilobytes = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kilobytes) * 1024


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a tritonserver's backend stubs, one per Python model instance)."""
    return [int(proc.name) for proc in Path("/proc").iterdir() if proc.name.isdigit() and _parent(proc) == pid]


def _parent(proc: Path) -> int | None:
    try:
        stat = (proc / "stat").read_text(encoding="utf-8")
    except OSError:  # gone meanwhile
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])
