"""Serving load benchmark: the local Triton (KServe v2 gRPC and KServe v2 HTTP), the AutoML
JSON gateway (HTTP, forwarding to Triton's KServe v2 HTTP) and an eager PyTorch server, in one run.

All serve the same trained model; the shared closed-loop load generator
(../shared/bench/loadgen.py: N concurrent clients for a fixed time after a warm-up,
loopback only) drives each in turn with the same real images. It speaks Triton gRPC and
plain HTTP; benchmarks/loadgen_kserve_http.py is the same generator speaking KServe v2 HTTP
(binary-data extension) through tritonclient.http.

  .venv/bin/autovision quickstart                      # once: a finished run to serve
  .venv/bin/python benchmarks/serving_load.py [--run RUN_DIR] [--concurrency 1,8,32] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import cpu_model

from autovision.embedded_s3 import free_port
from autovision.serving import LocalTritonServer
from autovision.serving.gateway import GatewayConfig, GatewayServer

ROOT = Path(__file__).resolve().parents[1]
LOADGEN = ROOT.parent / "shared" / "bench" / "loadgen.py"
LOADGEN_KSERVE_HTTP = ROOT / "benchmarks" / "loadgen_kserve_http.py"
TRITON_MODEL = ["--model-name", "autovision", "--triton-shape", "1,1", "--output-name", "SCORES"]


def newest_run(storage: Path) -> Path:
    """The most recently finished run under a file:// storage root."""
    cards = sorted(storage.glob("runs/*/*/*/model/model.json"), key=lambda p: p.stat().st_mtime)
    if not cards:
        raise SystemExit(f"no finished run under {storage}: run `.venv/bin/autovision quickstart` first")
    return cards[-1].parents[1]


def loadgen(script: Path, target: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One run of a load generator script (the shared one or its KServe v2 HTTP variant); its levels."""
    command = [sys.executable, str(script), *target, "--concurrency", args.concurrency]
    command += ["--duration", str(args.duration), "--warmup", str(args.warmup), "--procs", "2"]
    command += ["--data", str(args.data), "--res", str(args.res), "--images", "64"]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=LOADGEN.parent).stdout
    levels: list[dict[str, Any]] = json.loads(output.strip().splitlines()[-1])["levels"]
    return levels


def start_eager(run: Path, port: int) -> subprocess.Popen[str]:
    command = [sys.executable, str(ROOT / "benchmarks" / "eager_server.py"), "--run", str(run), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if "ready" not in process.stdout.readline():
        process.kill()
        raise SystemExit("the eager server did not start")
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="finished run directory (default: newest under .autovision)")
    parser.add_argument("--data", type=Path, default=ROOT / ".autovision" / "data" / "digits.zip")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--res", type=int, default=32, help="side of the JPEGs sent")
    args = parser.parse_args()
    if not LOADGEN.exists():
        raise SystemExit(f"{LOADGEN} is missing: this benchmark uses the shared load generator")
    run = args.run or newest_run(ROOT / ".autovision" / "storage")
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as work:
        with (
            LocalTritonServer(run / "triton", work_dir=Path(work) / "triton") as triton,
            GatewayServer(GatewayConfig(triton.http_url), free_port()) as gateway,
        ):
            results["triton-grpc"] = loadgen(LOADGEN, ["--grpc-triton", triton.grpc_url, *TRITON_MODEL], args)
            results["triton-http"] = loadgen(
                LOADGEN_KSERVE_HTTP, ["--url", f"http://{triton.http_url}", *TRITON_MODEL], args
            )
            results["gateway-http"] = loadgen(
                LOADGEN, ["--url", f"{gateway.url}/v1/models/autovision:predict", "--format", "json"], args
            )
        eager_port = free_port()
        eager = start_eager(run, eager_port)
        try:
            eager_url = f"http://127.0.0.1:{eager_port}/predict"
            results["eager-http"] = loadgen(LOADGEN, ["--url", eager_url, "--format", "json"], args)
        finally:
            eager.terminate()
            eager.wait(timeout=30)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; run {run}")
    print("| server | clients | images/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for server, levels in results.items():
        for level in levels:
            row = [server, level["concurrency"], level["rps"], level["p50_ms"], level["p99_ms"], level["errors"]]
            print("| " + " | ".join(str(v) for v in row) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
