"""Serving test inputs: a tiny ONNX classifier, seeded images, Triton's config parser, a stand-in backend API."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format  # type: ignore[import-untyped]
from google.protobuf.json_format import MessageToJson  # type: ignore[import-untyped]
from onnx import TensorProto, helper
from PIL import Image
from tritonclient.grpc import model_config_pb2

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.preprocess import ImageLimits, PreprocessConfig, preprocess_bytes
from autovision.serving import (
    TritonServerError,
)
from autovision.serving.repository import DecodeBudget
from autovision.serving.tritonserver import LocalTritonServer, pytriton_tritonserver_dir

LABELS = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
PREPROCESS = PreprocessConfig(size=24)
TOP_K = 3
PROTOCOLS = ["http", "grpc"]
# The image policy of the tests that send images at its limits: 1 MiB, 8 Mpx, two images decoded at a time.
POLICY_LIMITS = ImageLimits(max_bytes=1024 * 1024, max_pixels=8_000_000)
POLICY_BUDGET = DecodeBudget(POLICY_LIMITS, memory_bytes=2 * POLICY_LIMITS.decode_bytes())
ANIMALS = ["cat", "dog", "fox"]


def make_onnx_classifier(path: Path, num_labels: int, seed: int = 0, *, embedding: bool = True) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm with fixed random weights, dynamic batch; like a run's export, the
    pooled features are a second output, ``embedding`` (3 floats), unless ``embedding`` is False (an older run)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 3.0, size=(3, num_labels)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, size=num_labels).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["features"]),
            helper.make_node("Gemm", ["features", "weights", "bias"], ["logits"]),
            *([helper.make_node("Identity", ["features"], [EMBEDDING_OUTPUT])] if embedding else []),
        ],
        "tiny_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, None, None])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_labels]),
            *([helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", 3])] if embedding else []),
        ],
        initializer=[
            onnx.numpy_helper.from_array(weights, "weights"),
            onnx.numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def encode_image(fmt: str, seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A seeded colour gradient with noise, not square, so resizing matters."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, size=3)
    ramp = np.linspace(-60, 60, size[0])[None, :, None]
    noise = rng.normal(0, 20, size=(size[1], size[0], 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)


def reference_top_k(onnx_path: Path, image: bytes) -> list[tuple[str, float]]:
    """What the model predicts run directly, outside Triton, on the shared preprocessing."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batch = preprocess_bytes(image, PREPROCESS)[None]
    scores = softmax(session.run(["logits"], {"input": batch})[0])[0]
    best = np.argsort(-scores)[:TOP_K]
    return [(LABELS[i], float(scores[i])) for i in best]


def tritonserver_unavailable() -> str | None:
    """Why the tritonserver binary cannot run here, or None when it can."""
    try:
        binary = pytriton_tritonserver_dir() / "bin" / "tritonserver"
    except TritonServerError as error:
        return str(error)
    if not sys.platform.startswith("linux"):
        return "nvidia-pytriton's tritonserver runs on Linux only"
    return None if binary.is_file() else f"{binary} is missing"


TRITONSERVER_UNAVAILABLE = tritonserver_unavailable()
_SKIP_WITHOUT_TRITONSERVER = pytest.mark.skipif(
    TRITONSERVER_UNAVAILABLE is not None, reason=TRITONSERVER_UNAVAILABLE or ""
)
Test = TypeVar("Test", bound=Callable[..., Any])


def needs_tritonserver(test: Test) -> Test:
    """Mark a test that starts tritonserver, and skip it where the binary cannot run."""
    marked: Test = pytest.mark.tritonserver(_SKIP_WITHOUT_TRITONSERVER(test))
    return marked


def parse_config(text: str) -> Any:
    """Parse with Triton's own ModelConfig schema: the text must be valid for Triton."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@dataclass
class FakeTensor:
    tensor_name: str
    array: npt.NDArray[Any]

    def as_numpy(self) -> npt.NDArray[Any]:
        return self.array


@dataclass
class FakeTritonError:
    message: str
    code: str = "INTERNAL"
    INVALID_ARG = "INVALID_ARG"
    INTERNAL = "INTERNAL"


@dataclass
class FakeResponse:
    output_tensors: list[FakeTensor] = field(default_factory=list)
    error: FakeTritonError | None = None


def fake_request(*images: bytes) -> dict[str, FakeTensor]:
    array = np.array([[image] for image in images], dtype=np.object_)
    return {"IMAGE": FakeTensor("IMAGE", array)}


FAKE_PB_UTILS = SimpleNamespace(
    Tensor=FakeTensor,
    TritonError=FakeTritonError,
    InferenceResponse=FakeResponse,
    get_input_tensor_by_name=lambda request, name: request[name],
)


def load_backend_module(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a written model.py the way Triton's stub does."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FAKE_PB_UTILS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"autovision_backend_under_test_{model_dir.name}"
    spec = importlib.util.spec_from_file_location(name, model_dir / "1" / "model.py")
    assert spec is not None
    assert spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def load_backend(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Import a written model.py the way Triton's stub does, and initialize it."""
    model = load_backend_module(model_dir, monkeypatch).TritonPythonModel()
    config = parse_config((model_dir / "config.pbtxt").read_text())
    model.initialize(
        {
            "model_config": MessageToJson(config, preserving_proto_field_name=True),
            "model_repository": str(model_dir),
            "model_version": "1",
        }
    )
    return model


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


def shm_bytes(regions: list[Path]) -> int:
    """Memory the files in /dev/shm hold (allocated blocks, not their sizes: tmpfs allocates on write)."""
    total = 0
    for region in regions:
        with contextlib.suppress(FileNotFoundError):  # a region released meanwhile
            total += region.stat().st_blocks * 512
    return total


def private_rss_bytes(pid: int) -> int:
    """A process's resident memory without its shared-memory mappings (RssAnon + RssFile): /dev/shm counted once."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text("utf-8").splitlines())
        return sum(int(fields[name].split()[0]) * 1024 for name in ("RssAnon", "RssFile"))
    return 0


@dataclass
class MemoryPeak:
    """The most memory a tritonserver tree held at once: its processes' private RSS plus its /dev/shm regions.

    Polled every few milliseconds while in use (a batch holds its memory for far longer),
    which is what a container's memory cgroup would count.
    """

    server: LocalTritonServer
    pids: list[int]
    period_s: float = 0.005
    peak: int = 0
    private_peak: int = 0
    shm_peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> tuple[int, int]:
        """(private RSS, /dev/shm) bytes at this moment."""
        return sum(private_rss_bytes(pid) for pid in self.pids), shm_bytes(self.server.shm_regions())

    def _poll(self) -> None:
        while True:
            private, shm = self.now()
            self.peak = max(self.peak, private + shm)
            self.private_peak, self.shm_peak = max(self.private_peak, private), max(self.shm_peak, shm)
            if self._stop.wait(self.period_s):
                return

    def __enter__(self) -> MemoryPeak:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
