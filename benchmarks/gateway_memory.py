"""Benchmark: the gateway's peak memory with every slot at work and its queue full, against ``GatewayMemory``.

    PYTHONPATH=. .venv/bin/python benchmarks/gateway_memory.py --repository TRITON_REPO \
        [--concurrency 2] [--queue 4] [--transport grpc]

Starts a local tritonserver on a written Triton repository (``autovision serve``'s
local layout) and the gateway as the serving pods run it (``python -m
autovision.serving.gateway``, its own process), then sends concurrency + queue
AutoML v1 predict requests at once, each the largest image the policy allows (a flat
RGBA PNG padded to the byte limit: slow to decode, so the slots stay busy while the
queue fills). Polls the gateway's resident memory every 10 ms and prints one JSON line:
idle and peak RSS, the answers, and the arithmetic's terms.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import requests
from google.api_core import exceptions
from google.cloud import automl_v1
from google.cloud.automl_v1.services.prediction_service.transports import PredictionServiceGrpcTransport
from PIL import Image

from autovision.contract import env
from autovision.embedded_s3 import free_port
from autovision.serving.tritonserver import LocalTritonServer
from autovision_operator.config import OperatorConfig
from autovision_operator.serving_builders import GatewayMemory

MIB = 1024**2
MODEL = "projects/p/locations/l/models/autovision"


def largest_image(max_bytes: int, pixels: int) -> bytes:
    """A flat RGBA PNG of ``pixels`` pixels padded to ``max_bytes`` (Pillow ignores what follows IEND)."""
    side = int(pixels**0.5)
    buffer = io.BytesIO()
    Image.new("RGBA", (side, side)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue() + b"\0" * (max_bytes - buffer.tell())


def rss_bytes(pid: int) -> int:
    """Resident memory of a process now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def predict(transport: str, target: str, image: bytes) -> str:
    """One AutoML v1 predict; its outcome as a short string."""
    if transport == "rest":
        body = {"payload": {"image": {"imageBytes": base64.b64encode(image).decode()}}}
        answer = requests.post(f"http://{target}/v1/models/autovision:predict", json=body, timeout=300)
        return str(answer.status_code)
    channel = grpc.insecure_channel(target)
    client = automl_v1.PredictionServiceClient(transport=PredictionServiceGrpcTransport(channel=channel))
    payload = automl_v1.ExamplePayload(image=automl_v1.Image(image_bytes=image))
    try:
        client.predict(name=MODEL, payload=payload, timeout=300)
    except exceptions.GoogleAPICallError as error:  # the outcome is what is measured
        return type(error).__name__
    finally:
        channel.close()
    return "OK"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """One burst against a fresh tritonserver and gateway."""
    max_bytes = args.max_image_mib * MIB
    settings = {
        env.MAX_IMAGE_BYTES: str(max_bytes),
        env.GATEWAY_MAX_CONCURRENCY: str(args.concurrency),
        env.GATEWAY_MAX_QUEUE: str(args.queue),
    }
    config = OperatorConfig(
        storage_root="s3://autovision",
        trainer_image="t",
        max_image_bytes=max_bytes,
        gateway_max_concurrency=args.concurrency,
        gateway_max_queue=args.queue,
    )
    memory = GatewayMemory.from_config(config)
    image = largest_image(max_bytes, args.megapixels * 1_000_000)
    http_port, grpc_port = free_port(), free_port()
    with LocalTritonServer(Path(args.repository)) as triton:
        gateway = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autovision.serving.gateway",
                f"--port={http_port}",
                f"--grpc-port={grpc_port}",
                f"--triton-url={triton.http_url}",
                "--model-name=autovision",
            ],
            env=os.environ | settings,
        )
        try:
            for _ in range(300):
                try:
                    if requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(0.1)
            idle = rss_bytes(gateway.pid)
            peak, done = idle, threading.Event()

            def poll() -> None:
                nonlocal peak
                while not done.wait(0.01):
                    peak = max(peak, rss_bytes(gateway.pid))

            poller = threading.Thread(target=poll)
            poller.start()
            target = f"127.0.0.1:{http_port if args.transport == 'rest' else grpc_port}"
            started = time.perf_counter()
            burst = args.concurrency + args.queue
            with ThreadPoolExecutor(burst) as pool:
                answers = list(pool.map(lambda _: predict(args.transport, target, image), range(burst)))
            seconds = time.perf_counter() - started
            done.set()
            poller.join()
        finally:
            gateway.terminate()
            gateway.wait(30)
    return {
        "transport": args.transport,
        "concurrency": args.concurrency,
        "queue": args.queue,
        "maxImageBytes": max_bytes,
        "imageMegapixels": args.megapixels,
        "answers": {answer: answers.count(answer) for answer in sorted(set(answers))},
        "seconds": round(seconds, 1),
        "idleRssMiB": round(idle / MIB),
        "peakRssMiB": round(peak / MIB),
        "grownMiB": round((peak - idle) / MIB),
        "arithmeticMiB": {
            "working": round(memory.working / MIB),
            "waiting": round(memory.waiting / MIB),
            "base": round(memory.base / MIB),
            "total": round(memory.total() / MIB),
        },
    }


def main() -> None:
    """Parse arguments, run one burst, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", required=True, help="a local-layout Triton repository")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--queue", type=int, default=4)
    parser.add_argument("--max-image-mib", type=int, default=30)
    parser.add_argument("--megapixels", type=int, default=40, help="pixels of the image, slow to decode")
    parser.add_argument("--transport", choices=("grpc", "rest"), default="grpc")
    print(json.dumps(run(parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
