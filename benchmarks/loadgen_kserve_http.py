"""The shared load generator, speaking KServe v2 HTTP to Triton (binary-data extension) instead of plain HTTP.

The shared ../shared/bench/loadgen.py drives JSON/raw HTTP servers and Triton over gRPC. This wrapper
replaces only its HTTP client, with one sending each image as a KServe v2 inference request through
tritonclient.http; the levels, warm-up, measurement and JSON output stay loadgen's. ``--url`` names
Triton's HTTP endpoint; ``--model-name``, ``--input-name``, ``--triton-shape`` and ``--output-name``
mean what they mean for ``--grpc-triton``.

  .venv/bin/python benchmarks/loadgen_kserve_http.py --url http://127.0.0.1:8000 --model-name autovision \\
      --triton-shape 1,1 --output-name SCORES --concurrency 1,8 --duration 10
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as triton_http

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT.parent / "shared" / "bench"))
loadgen: Any = importlib.import_module("loadgen")  # untyped, found on the path above


def kserve_http_client(  # noqa: PLR0917 - loadgen passes these positionally
    a: argparse.Namespace,
    bodies: list[bytes],
    offset: int,
    deadline: float,
    budget: Iterator[int],
    records: list[tuple[float, float, bool]],
) -> None:
    """One client thread, under loadgen's ``http_client`` contract: a (start, latency, ok) record per request."""
    client = triton_http.InferenceServerClient(
        urllib.parse.urlsplit(a.url).netloc, connection_timeout=a.timeout, network_timeout=a.timeout
    )
    shape = [int(s) for s in a.triton_shape.split(",")]
    outputs = [triton_http.InferRequestedOutput(a.output_name, binary_data=True)] if a.output_name else None
    inputs = []
    for body in bodies:
        tensor = triton_http.InferInput(a.input_name, shape, "BYTES")
        tensor.set_data_from_numpy(np.array([body], dtype=np.object_).reshape(shape), binary_data=True)
        inputs.append(tensor)
    for i in itertools.count(offset):
        if time.time() >= deadline or next(budget) < 0:
            break
        t0, p0 = time.time(), time.perf_counter()
        try:
            client.infer(a.model_name, [inputs[i % len(inputs)]], outputs=outputs)
            ok = True
        except Exception:  # noqa: BLE001 - as in loadgen: any failure is an error record
            ok = False
            time.sleep(0.01)
        records.append((t0, time.perf_counter() - p0, ok))
    client.close()


def main() -> None:
    """Run the shared load generator with this HTTP client."""
    loadgen.http_client = kserve_http_client
    loadgen.main()


if __name__ == "__main__":
    main()
