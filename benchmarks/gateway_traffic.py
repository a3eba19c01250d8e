"""Gateway traffic benchmark: one model, a 90/10 split and a shadow, side by side in one run.

Two local tritonservers serve the same Triton repository (``--repository``, e.g. a
quickstart run's ``triton/``; default: the tests' tiny ONNX classifier at 32 px), as a
cluster runs one Triton Deployment per model. The AutoML JSON gateway stands in front
of them four ways in turn: every request to the first (one model), 90/10 between
them (a canary), every request to the first with the second as a shadow, and the
same with a third tritonserver as the shadow, run at idle CPU priority
(``chrt --idle``): on a machine with too few cores to give the shadow its own, as a
cluster does (its own pods), that is the nearest stand-in for a shadow that takes
no CPU from the primary; it only computes when the primary's path leaves a core idle. The
shared closed-loop load generator (../shared/bench/loadgen.py, via serving_load.loadgen)
drives each at every level, the three taking turns for ``--rounds`` rounds so that a
shared machine's drifting load falls on all of them alike; the table gives each
level's median over the rounds. The gateways' own counts (``/v1/traffic``) give the
split they made and the shadow's compared and dropped copies.

  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/gateway_traffic.py [--repository DIR] \
      [--concurrency 8,32] [--duration 10] [--warmup 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import cpu_model
from serving_load import LOADGEN, ROOT, loadgen
from tests.support.serving import LABELS, make_onnx_classifier

from autovision.embedded_s3 import free_port
from autovision.preprocess import PreprocessConfig
from autovision.serving import LocalTritonServer, write_local_repository
from autovision.serving.gateway import GatewayConfig, GatewayServer
from autovision.serving.traffic import STATS_PATH, Backend, Routes, Shadow, TrafficStats

FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers.zip"


def tiny_repository(work: Path) -> Path:
    """The tests' tiny classifier as a local Triton repository (32 px preprocessing)."""
    onnx_path = make_onnx_classifier(work / "model.onnx", num_labels=len(LABELS))
    write_local_repository(work / "repository", onnx_path, LABELS, PreprocessConfig(size=32))
    return work / "repository"


class IdleTritonServer(LocalTritonServer):
    """A tritonserver at idle CPU priority (SCHED_IDLE, inherited by its threads and backend stubs)."""

    def command(self, triton_dir: Path, backend_dir: Path) -> list[str]:
        return ["chrt", "--idle", "0", *super().command(triton_dir, backend_dir)]


def layouts(first: str, second: str, idle: str) -> dict[str, Routes]:
    """The four ways the gateway stands in front of the Tritons."""
    primary = Backend(run="current", triton_url=first, percent=100)
    canary = (primary.model_copy(update={"percent": 90}), Backend(run="candidate", triton_url=second, percent=10))
    return {
        "one model": Routes(backends=(primary,)),
        "90/10 split": Routes(backends=canary),
        "shadow": Routes(backends=(primary,), shadow=Shadow(run="candidate", triton_url=second)),
        "shadow at idle priority": Routes(backends=(primary,), shadow=Shadow(run="candidate", triton_url=idle)),
    }


def traffic(url: str) -> TrafficStats:
    with urllib.request.urlopen(url + STATS_PATH, timeout=30) as reply:
        return TrafficStats.model_validate_json(reply.read())


def summary(stats: TrafficStats) -> str:
    """What the gateway counted: requests per model, and the shadow's copies."""
    parts = [f"{run} {model.requests} ({model.errors} errors)" for run, model in stats.models.items()]
    if stats.shadow is not None:
        shadow = stats.shadow
        parts.append(f"shadow compared {shadow.compared}, dropped {shadow.dropped}, errors {shadow.errors}")
    return "; ".join(parts)


def medians(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per level (the same concurrency in every round): the median of each figure over the rounds."""
    return [
        {key: statistics.median(level[key] for level in levels) for key in ("concurrency", "rps", "p50_ms", "p99_ms")}
        | {"errors": sum(level["errors"] for level in levels)}
        for levels in zip(*rounds, strict=True)
    ]


def load_parser(description: str, turns: str) -> argparse.ArgumentParser:
    """The options of every gateway benchmark: what is served, what is sent, at what load, how long."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repository", type=Path, help="a local Triton repository (default: a tiny classifier)")
    parser.add_argument("--data", type=Path, default=FLOWERS, help="images to send: a dataset zip")
    parser.add_argument("--concurrency", default="8,32")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--res", type=int, default=32, help="side of the JPEGs sent")
    parser.add_argument("--rounds", type=int, default=3, help=turns)
    return parser


def require_loadgen() -> None:
    """Stop with a message where the shared load generator (../shared/bench) is missing."""
    if not LOADGEN.exists():
        raise SystemExit(f"{LOADGEN} is missing: this benchmark uses the shared load generator")


def take_turns(gateways: dict[str, GatewayServer], args: argparse.Namespace) -> dict[str, list[list[dict[str, Any]]]]:
    """Load each gateway in turn, ``args.rounds`` times, so drift in the machine's load spreads over all of them."""
    rounds: dict[str, list[list[dict[str, Any]]]] = {}
    for _ in range(args.rounds):
        for name, server in gateways.items():
            target = ["--url", f"{server.url}/v1/models/autovision:predict", "--format", "json"]
            rounds.setdefault(name, []).append(loadgen(LOADGEN, target, args))
    return rounds


def print_results(
    rounds: dict[str, list[list[dict[str, Any]]]], args: argparse.Namespace, load_before: tuple[float, ...]
) -> None:
    """The machine line and the median of each gateway's figures as a Markdown table, as docs/benchmarks.md has."""
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; load average before {load_before}, after {os.getloadavg()}")
    print(f"repository: {args.repository or 'tiny classifier'}; {args.rounds} rounds; medians over the rounds")
    print("| gateway | clients | images/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, levels in rounds.items():
        for level in medians(levels):
            row = [name, level["concurrency"], level["rps"], level["p50_ms"], level["p99_ms"], level["errors"]]
            print("| " + " | ".join(str(v) for v in row) + " |")


def main() -> None:
    args = load_parser(__doc__.splitlines()[0], "turns each layout takes").parse_args()
    require_loadgen()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as work, ExitStack() as stack:
        repository = args.repository or tiny_repository(Path(work))
        first = stack.enter_context(LocalTritonServer(repository, work_dir=Path(work) / "first"))
        second = stack.enter_context(LocalTritonServer(repository, work_dir=Path(work) / "second"))
        idle = stack.enter_context(IdleTritonServer(repository, work_dir=Path(work) / "idle"))
        gateways = {
            name: stack.enter_context(GatewayServer(GatewayConfig(first.http_url, routes=routes), free_port()))
            for name, routes in layouts(first.http_url, second.http_url, idle.http_url).items()
        }
        rounds = take_turns(gateways, args)
        counted = {name: summary(traffic(server.url)) for name, server in gateways.items()}
    print_results(rounds, args, load_before)
    for name, text in counted.items():
        print(f"{name}: {text}")
    print(json.dumps({"rounds": rounds, "counted": counted}))


if __name__ == "__main__":
    main()
