"""The backend model.py, run with a stand-in for triton_python_backend_utils."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from autovision.preprocess import ImageLimits, PreprocessConfig, preprocess_batch
from autovision.serving import (
    LocalTritonServer,
    write_local_repository,
)
from autovision.serving.model_config import QUEUED_BATCHES
from autovision.serving.repository import INPUT_NAME, OUTPUT_NAME, DecodeBudget
from autovision_operator.config import OperatorConfig
from autovision_operator.serving_builders import TritonMemory
from tests.support.serving import (
    ANIMALS,
    LABELS,
    POLICY_BUDGET,
    POLICY_LIMITS,
    PREPROCESS,
    CappedTritonServer,
    MemoryPeak,
    child_pids,
    encode_image,
    fake_request,
    load_backend,
    load_backend_module,
    make_onnx_classifier,
    needs_tritonserver,
    peak_rss_bytes,
    softmax,
)


class CountingSession:
    """An ONNX Runtime session that records the batch size of every run."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.batch_sizes: list[int] = []

    def run(self, outputs: list[str], feed: dict[str, npt.NDArray[np.float32]]) -> Any:
        self.batch_sizes.append(len(feed["input"]))
        return self.session.run(outputs, feed)


@pytest.mark.usefixtures("clean_backend_imports")
@pytest.mark.parametrize("multi_label", [False, True])
def test_backend_batches_requests_and_isolates_bad_images(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch, multi_label: bool
) -> None:
    model_dir = write_local_repository(tmp_path, onnx_path, LABELS, PREPROCESS, multi_label=multi_label)
    model = load_backend(model_dir, monkeypatch)
    model._session = counting = CountingSession(model._session)
    images = [encode_image("PNG", 1), encode_image("JPEG", 2), encode_image("PNG", 3)]

    responses = model.execute(
        [fake_request(images[0], images[1]), fake_request(b"not an image"), fake_request(images[2])]
    )

    assert counting.batch_sizes == [3], "all good images of all requests go through one session.run"
    assert responses[1].error.code == "INVALID_ARG"
    assert "IMAGE[0] is not a decodable image" in responses[1].error.message
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"input": preprocess_batch(images, PREPROCESS)})[0]
    expected = 1 / (1 + np.exp(-logits)) if multi_label else softmax(logits)
    served = np.concatenate([r.output_tensors[0].array for r in (responses[0], responses[2])])
    assert responses[0].error is None
    assert responses[2].error is None
    np.testing.assert_allclose(served, expected, atol=1e-6)


@pytest.mark.usefixtures("clean_backend_imports")
def test_local_backend_uses_cpu_unless_a_gpu_instance_has_cuda(
    tmp_path: Path, onnx_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_backend_module(write_local_repository(tmp_path, onnx_path, LABELS, PREPROCESS), monkeypatch)

    assert module.execution_providers({"model_instance_kind": "CPU"}) == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    gpu = module.execution_providers({"model_instance_kind": "GPU", "model_instance_device_id": "1"})
    assert gpu == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]


REFUSED = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
MODULES = {"http": httpclient, "grpc": grpcclient}


@dataclass(frozen=True)
class Served:
    """The capped server and its decoding processes' resident memory when idle."""

    server: CappedTritonServer
    stubs: list[int]
    idle_rss_bytes: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("backend_model")
    onnx_path = make_onnx_classifier(workdir / "model.onnx", num_labels=len(ANIMALS))
    write_local_repository(workdir / "repository", onnx_path, ANIMALS, PreprocessConfig(size=16), budget=POLICY_BUDGET)
    with CappedTritonServer(workdir / "repository", work_dir=workdir / "triton") as server:
        assert server.pid is not None
        stubs = child_pids(server.pid)
        yield Served(server, stubs, sum(peak_rss_bytes(pid) for pid in stubs))


def infer(server: LocalTritonServer, protocol: str, image: bytes) -> tuple[str, str]:
    """("ok", "") for an answer, else Triton's status and message."""
    module = MODULES[protocol]
    url = server.http_url if protocol == "http" else server.grpc_url
    image_input = module.InferInput(INPUT_NAME, [1, 1], "BYTES")
    image_input.set_data_from_numpy(np.array([[image]], dtype=np.object_))
    try:
        with module.InferenceServerClient(url) as client:
            client.infer("autovision", [image_input], outputs=[module.InferRequestedOutput(OUTPUT_NAME)])
    except InferenceServerException as error:
        return str(error.status()), str(error.message())
    return "ok", ""


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _padded_to(data: bytes, size: int) -> bytes:
    return data + b"\0" * (size - len(data))  # Pillow ignores what follows a PNG's IEND


@pytest.mark.e2e
@needs_tritonserver
def test_each_limit_is_enforced_in_triton(
    served: Served, claimed_png: Callable[[int, int], bytes], flat_png: Callable[..., bytes]
) -> None:
    small = flat_png(8, 8)
    cases = {
        "at the pixel limit": (flat_png(4000, 2000), None),
        "one row over the pixel limit": (flat_png(4000, 2001), "8000000-pixel limit"),
        "a tiny file claiming 100000x100000": (claimed_png(100_000, 100_000), "8000000-pixel limit"),
        "a header in Pillow's warning range": (claimed_png(10_000, 10_000), "8000000-pixel limit"),
        "at the byte limit": (_padded_to(small, POLICY_LIMITS.max_bytes), None),
        "one byte over the byte limit": (_padded_to(small, POLICY_LIMITS.max_bytes + 1), "1048576-byte limit"),
        "CMYK JPEG": (_encoded(Image.new("CMYK", (40, 30), (10, 200, 30, 0)), "JPEG"), None),
        "16-bit PNG": (_encoded(Image.new("I;16", (40, 30), 40000), "PNG"), None),
    }
    for protocol in ("http", "grpc"):
        for case, (image, limit) in cases.items():
            status, message = infer(served.server, protocol, image)
            if limit is None:
                assert status == "ok", f"{protocol}, {case}: {message}"
            else:
                assert status == REFUSED[protocol], f"{protocol}, {case}"
                assert limit in message, f"{protocol}, {case}: {message}"


@pytest.mark.e2e
@needs_tritonserver
def test_a_burst_of_largest_images_stays_within_the_decode_budget(
    served: Served, flat_png: Callable[..., bytes]
) -> None:
    largest = flat_png(4000, 2000, "RGBA")  # 8 Mpx, decoded 4 bytes a pixel, then RGB
    assert len(served.stubs) == POLICY_BUDGET.instances() == 2
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: infer(served.server, "http", largest), range(24)))
    assert answers == [("ok", "")] * 24
    grown = sum(peak_rss_bytes(pid) for pid in served.stubs) - served.idle_rss_bytes
    budget_mib = POLICY_BUDGET.memory_bytes / 2**20
    print(f"decoding processes' peak RSS grew by {grown / 2**20:.0f} MiB; budget {budget_mib:.0f} MiB")
    assert grown <= POLICY_BUDGET.memory_bytes * 1.5


# TritonMemory's worst case scaled down to run in seconds: images of 8 MiB and 2 Mpx,
# a decode budget of two of them (2 instances), batches of 8, so a burst of 32.
WORST_LIMITS = ImageLimits(max_bytes=8 * 1024**2, max_pixels=2_000_000)
WORST_BUDGET = DecodeBudget(WORST_LIMITS, memory_bytes=2 * WORST_LIMITS.decode_bytes())
WORST_BATCH = 8


@pytest.mark.e2e
@needs_tritonserver
def test_a_full_burst_of_largest_images_fits_the_triton_memory_arithmetic(
    tmp_path: Path, flat_png: Callable[..., bytes]
) -> None:
    """Every instance busy and the queue full, of images at both limits: within what the operator sizes the pod for.

    Compared without the fixed term (server, idle stubs, model), so that a term the
    arithmetic misses fails the test instead of hiding in that gigabyte.
    """
    config = OperatorConfig(
        storage_root="s3://autovision",
        trainer_image="trainer",
        max_image_bytes=WORST_LIMITS.max_bytes,
        max_image_pixels=WORST_LIMITS.max_pixels,
        decode_memory_bytes=WORST_BUDGET.memory_bytes,
    )
    memory = TritonMemory.from_config(config, max_batch_size=WORST_BATCH)
    onnx_path = make_onnx_classifier(tmp_path / "model.onnx", num_labels=len(ANIMALS))
    repository = tmp_path / "repository"
    write_local_repository(
        repository, onnx_path, ANIMALS, PreprocessConfig(size=16), max_batch_size=WORST_BATCH, budget=WORST_BUDGET
    )
    largest = _padded_to(flat_png(2000, 1000, "RGBA"), WORST_LIMITS.max_bytes)  # at both limits, 4 bytes a pixel
    burst = (WORST_BUDGET.instances() + QUEUED_BATCHES) * WORST_BATCH
    with CappedTritonServer(repository, work_dir=tmp_path / "triton") as server:
        assert server.pid is not None
        stubs = child_pids(server.pid)
        assert len(stubs) == WORST_BUDGET.instances() == 2
        peak = MemoryPeak(server, [server.pid, *stubs])
        idle, idle_shm = peak.now()
        with peak, ThreadPoolExecutor(burst) as pool:
            answers = Counter(status for status, _ in pool.map(lambda _: infer(server, "http", largest), range(burst)))
    grown = peak.private_peak - idle
    in_processes = memory.decoded + memory.executing + memory.received
    print(
        f"burst of {burst}: {dict(answers)}; idle {idle / 2**20:.0f} MiB + /dev/shm {idle_shm / 2**20:.0f} MiB; "
        f"peak {peak.peak / 2**20:.0f} MiB: processes grown by {grown / 2**20:.0f} MiB (arithmetic "
        f"{in_processes / 2**20:.0f}), /dev/shm {peak.shm_peak / 2**20:.0f} MiB (arithmetic "
        f"{memory.shared / 2**20:.0f}); arithmetic total {memory.total() / 2**20:.0f} MiB"
    )
    assert set(answers) <= {"ok", "503"}, answers
    assert answers["ok"] >= WORST_BATCH, answers
    assert peak.shm_peak <= memory.shared
    assert grown <= in_processes
    assert peak.peak <= memory.total()
