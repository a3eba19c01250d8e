"""Triton's Python backend (``backend_model.py``) under the image policy, on a capped real tritonserver.

Over-limit images are refused with HTTP 400 and gRPC INVALID_ARGUMENT naming the
limit; odd modes are answered; a burst of the largest allowed images keeps the
decoding processes within the memory budget the repository was written for.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from autovision.preprocess import ImageLimits, PreprocessConfig
from autovision.serving import write_local_repository
from autovision.serving.repository import INPUT_NAME, OUTPUT_NAME, DecodeBudget
from tests.conftest import CappedTritonServer, child_pids, peak_rss_bytes
from tests.test_serving import make_onnx_classifier, needs_tritonserver

LIMITS = ImageLimits(max_bytes=1024 * 1024, max_pixels=8_000_000)
BUDGET = DecodeBudget(LIMITS, memory_bytes=2 * LIMITS.decode_bytes())
LABELS = ["cat", "dog", "fox"]
REFUSED = {"http": "400", "grpc": "StatusCode.INVALID_ARGUMENT"}
MODULES = {"http": httpclient, "grpc": grpcclient}

pytestmark = [pytest.mark.e2e, needs_tritonserver]


@dataclass(frozen=True)
class Served:
    """The capped server and its decoding processes' resident memory when idle."""

    server: CappedTritonServer
    stubs: list[int]
    idle_rss_bytes: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("backend_model")
    onnx_path = make_onnx_classifier(workdir / "model.onnx", num_labels=len(LABELS))
    write_local_repository(workdir / "repository", onnx_path, LABELS, PreprocessConfig(size=16), budget=BUDGET)
    with CappedTritonServer(workdir / "repository", work_dir=workdir / "triton") as server:
        assert server.pid is not None
        stubs = child_pids(server.pid)
        yield Served(server, stubs, sum(peak_rss_bytes(pid) for pid in stubs))


def infer(served: Served, protocol: str, image: bytes) -> tuple[str, str]:
    """("ok", "") for an answer, else Triton's status and message."""
    module = MODULES[protocol]
    url = served.server.http_url if protocol == "http" else served.server.grpc_url
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


def test_each_limit_is_enforced_in_triton(
    served: Served, claimed_png: Callable[[int, int], bytes], flat_png: Callable[..., bytes]
) -> None:
    small = flat_png(8, 8)
    cases = {
        "at the pixel limit": (flat_png(4000, 2000), None),
        "one row over the pixel limit": (flat_png(4000, 2001), "8000000-pixel limit"),
        "a tiny file claiming 100000x100000": (claimed_png(100_000, 100_000), "8000000-pixel limit"),
        "a header in Pillow's warning range": (claimed_png(10_000, 10_000), "8000000-pixel limit"),
        "at the byte limit": (_padded_to(small, LIMITS.max_bytes), None),
        "one byte over the byte limit": (_padded_to(small, LIMITS.max_bytes + 1), "1048576-byte limit"),
        "CMYK JPEG": (_encoded(Image.new("CMYK", (40, 30), (10, 200, 30, 0)), "JPEG"), None),
        "16-bit PNG": (_encoded(Image.new("I;16", (40, 30), 40000), "PNG"), None),
    }
    for protocol in ("http", "grpc"):
        for case, (image, limit) in cases.items():
            status, message = infer(served, protocol, image)
            if limit is None:
                assert status == "ok", f"{protocol}, {case}: {message}"
            else:
                assert status == REFUSED[protocol], f"{protocol}, {case}"
                assert limit in message, f"{protocol}, {case}: {message}"


def test_a_burst_of_largest_images_stays_within_the_decode_budget(
    served: Served, flat_png: Callable[..., bytes]
) -> None:
    largest = flat_png(4000, 2000, "RGBA")  # 8 Mpx, decoded 4 bytes a pixel, then RGB
    assert len(served.stubs) == BUDGET.instances() == 2
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: infer(served, "http", largest), range(24)))
    assert answers == [("ok", "")] * 24
    grown = sum(peak_rss_bytes(pid) for pid in served.stubs) - served.idle_rss_bytes
    print(f"decoding processes' peak RSS grew by {grown / 2**20:.0f} MiB; budget {BUDGET.memory_bytes / 2**20:.0f} MiB")
    assert grown <= BUDGET.memory_bytes * 1.5
