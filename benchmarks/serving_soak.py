"""Benchmark: a bounded soak of local serving (tritonserver + AutoML JSON gateway) with hostile traffic.

    PYTHONPATH=. prlimit --as=4294967296 .venv/bin/python benchmarks/serving_soak.py --model RUN \\
        [--clients 6] [--requests 600] [--time-limit 240]

Serves the run's exported model as ``autovision serve`` does (the repository written
with the settings' image policy and decode budget), then sends ``--requests``
requests through the gateway from ``--clients`` threads, stopping early at
``--time-limit`` seconds: valid images of many sizes, the largest allowed image (a
flat RGBA PNG at the pixel limit), and hostile inputs (bad base64, bad JSON, a
non-image, tiny PNGs whose headers claim 100 and 10,000 megapixels, a body over
the byte limit). Every valid answer is compared with the answer the same image got
with no load. Prints one JSON line: answers by kind and status, latency
percentiles, and the peak RSS (VmHWM) of tritonserver, each backend stub and this
process (gateway and clients). Run it under ``prlimit``: the servers inherit the cap.
The repository root on ``PYTHONPATH`` lends it the tests' image and process helpers.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _common import cpu_model
from PIL import Image
from tests.support.images import png_claiming
from tests.support.serving import child_pids, peak_rss_bytes

from autovision.contract.keys import ONNX_FILE
from autovision.embedded_s3 import free_port
from autovision.export.layout import locate_model
from autovision.preprocess import PreprocessConfig
from autovision.serving import LocalTritonServer, write_local_repository
from autovision.serving.gateway import GatewayConfig, GatewayServer
from autovision.serving.repository import DecodeBudget
from autovision.settings import Settings

VALID_SIDES = (32, 224, 640, 1600, 3000)


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}))
    return buffer.getvalue()


def body(image: bytes) -> bytes:
    return json.dumps({"payload": {"image": {"imageBytes": base64.b64encode(image).decode()}}}).encode()


def inputs(settings: Settings) -> dict[str, list[bytes]]:
    """Request bodies by kind."""
    rng = np.random.default_rng(0)
    valid = []
    for side in VALID_SIDES:
        pixels = rng.integers(0, 255, size=(side // 8 + 1, side // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((side, side * 3 // 4), Image.Resampling.BICUBIC)
        valid += [body(encoded(image, "JPEG")), body(encoded(image, "PNG"))]
    largest_side = math.isqrt(settings.max_image_pixels)
    return {
        "valid": valid,
        "largest": [body(encoded(Image.new("RGBA", (largest_side, largest_side), (9, 99, 199, 255)), "PNG"))],
        "hostile": [
            b'{"payload": {"image": {"imageBytes": "%%%"}}}',
            b"{not json",
            body(b"not an image at all"),
            body(png_claiming(10_000, 10_000)),
            body(png_claiming(100_000, 100_000)),
            body(b"\xff" * (settings.max_image_bytes + 1)),
        ],
    }


def post(url: str, data: bytes) -> tuple[int, Any, float]:
    started = time.perf_counter()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read()), time.perf_counter() - started
    except urllib.error.HTTPError as error:
        return error.code, None, time.perf_counter() - started


def soak(url: str, kinds: dict[str, list[bytes]], args: argparse.Namespace) -> dict[str, Any]:
    expected = {data: post(url, data)[1] for data in kinds["valid"] + kinds["largest"]}
    plan = ["largest" if i % 20 == 0 else "hostile" if i % 4 == 1 else "valid" for i in range(args.requests)]
    deadline = time.monotonic() + args.time_limit

    def one(index: int) -> tuple[str, int, float, bool] | None:
        if time.monotonic() > deadline:
            return None
        kind = plan[index]
        data = kinds[kind][index % len(kinds[kind])]
        status, answer, seconds = post(url, data)
        return kind, status, seconds, status != 200 or kind == "hostile" or answer == expected[data]

    started = time.monotonic()
    with ThreadPoolExecutor(args.clients) as pool:
        results = [result for result in pool.map(one, range(args.requests)) if result is not None]
    latencies = sorted(seconds for kind, status, seconds, _ in results if status == 200)
    return {
        "seconds": round(time.monotonic() - started, 1),
        "sent": len(results),
        "answers": dict(Counter(f"{kind} {status}" for kind, status, _, _ in results)),
        "server5xx": sum(status >= 500 for _, status, _, _ in results),
        "validAnswersEqualUnloaded": all(same for *_, same in results),
        "p50Ms": round(1000 * latencies[len(latencies) // 2], 1),
        "p99Ms": round(1000 * latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a finished run (as autovision serve takes it)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--time-limit", type=float, default=240.0, help="stop sending after this many seconds")
    args = parser.parse_args()
    settings = Settings()
    location = locate_model(args.model, settings)
    card = location.card()
    with tempfile.TemporaryDirectory(prefix="autovision-soak-") as work:
        onnx_path = Path(work) / ONNX_FILE
        onnx_path.write_bytes(location.storage.read_bytes(location.key(ONNX_FILE)))
        budget = DecodeBudget.from_settings(settings)
        preprocess = PreprocessConfig(size=card.input_size, mean=card.mean, std=card.std)
        repository = Path(work) / "repository"
        write_local_repository(repository, onnx_path, card.labels, preprocess, budget=budget)
        kinds = inputs(settings)
        with (
            LocalTritonServer(repository, work_dir=Path(work) / "triton") as triton,
            GatewayServer(GatewayConfig.from_settings(triton.http_url, settings), free_port()) as gateway,
        ):
            assert triton.pid is not None
            result = soak(f"{gateway.url}/v1/models/autovision:predict", kinds, args)
            pids = {"tritonserver": triton.pid} | {f"stub {pid}": pid for pid in child_pids(triton.pid)}
            pids["benchmark (gateway + clients)"] = os.getpid()
            rss = {name: peak_rss_bytes(pid) / 2**20 for name, pid in pids.items()}
    result |= {
        "cpu": cpu_model(),
        "decodeInstances": budget.instances(),
        "maxImagePixels": settings.max_image_pixels,
        "maxImageBytes": settings.max_image_bytes,
        "peakRssMiB": {name: round(value) for name, value in rss.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
