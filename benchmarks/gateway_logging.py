"""Prediction logging benchmark: the gateway with logging off and at 10 %, side by side in one run.

One local tritonserver serves a Triton repository (``--repository``; default: the tests'
tiny ONNX classifier at 32 px); two AutoML JSON gateways stand in front of it, one that
logs nothing and one that logs ``--rate`` of its requests (images too, with
``--images``) into a file:// storage in a temporary directory. The shared closed-loop
load generator drives each at every level, the two taking turns for ``--rounds`` rounds
(gateway_traffic.py's harness: its repository, levels and medians), so that a shared
machine's drifting load falls on both alike. The logging gateway's counters
(``/metrics``) say how much it logged, dropped and wrote.

  PYTHONPATH=.:benchmarks nice -n 10 .venv/bin/python benchmarks/gateway_logging.py [--repository DIR] \
      [--rate 0.1] [--images] [--concurrency 8,32] [--duration 10] [--warmup 2] [--rounds 3]
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from gateway_traffic import load_parser, print_results, require_loadgen, take_turns, tiny_repository
from prometheus_client.parser import text_string_to_metric_families

from autovision.embedded_s3 import free_port
from autovision.serving import LocalTritonServer
from autovision.serving.gateway import METRICS_PATH, GatewayConfig, GatewayServer
from autovision.serving.prediction_log import METRICS_PREFIX, LogSettings
from autovision.settings import Settings


def log_counts(url: str) -> dict[str, float]:
    """The gateway's prediction-log counters."""
    with urllib.request.urlopen(url + METRICS_PATH, timeout=30) as reply:
        text = reply.read().decode()
    return {
        sample.name.removeprefix(f"{METRICS_PREFIX}_").removesuffix("_total"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def main() -> None:
    parser = load_parser(__doc__.splitlines()[0], "turns each gateway takes")
    parser.add_argument("--rate", type=float, default=0.1, help="the logging gateway's log rate")
    parser.add_argument("--images", action="store_true", help="the logging gateway stores images too")
    args = parser.parse_args()
    require_loadgen()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as work, ExitStack() as stack:
        repository = args.repository or tiny_repository(Path(work))
        triton = stack.enter_context(LocalTritonServer(repository, work_dir=Path(work) / "triton"))
        storage = Settings(storage_root=f"file://{work}/storage")
        logging = LogSettings(
            rate=args.rate, images=args.images, storage=storage, namespace="bench", deployment="logging"
        )
        configs = {
            "logging off": GatewayConfig(triton.http_url),
            f"logging {args.rate:.0%}": GatewayConfig(triton.http_url, logging=logging),
        }
        gateways = {name: stack.enter_context(GatewayServer(config, free_port())) for name, config in configs.items()}
        rounds = take_turns(gateways, args)
        logging_url = gateways[f"logging {args.rate:.0%}"].url
        before_close = log_counts(logging_url)
        stack.close()  # the gateways write what their logs hold, then Triton stops
        shards = len(list(Path(work, "storage").rglob("*.jsonl")))
    print_results(rounds, args, load_before)
    print(f"logging gateway before shutdown: {before_close}; shards in storage after it: {shards}")
    print(json.dumps({"rounds": rounds, "counted": before_close, "shards": shards}))


if __name__ == "__main__":
    main()
