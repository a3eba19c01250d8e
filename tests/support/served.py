"""A finished run laid out as the pipeline lays one out, and ``autovision serve`` on it as a subprocess.

The run's Triton repository serves a tiny ONNX classifier, so starting the server costs
seconds and the served answers can be checked against ONNX Runtime.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_DIR, TRITON_LOCAL, RunLocation, model_card_key
from autovision.export.card import artifact_uris
from autovision.export.layout import ModelLocation
from autovision.serving import write_local_repository
from autovision.serving.prediction_log import METRICS_PREFIX
from autovision.storage import Storage
from tests.support.serving import LABELS, PREPROCESS, make_onnx_classifier

RUN = RunLocation("local", "serve", "u1")
STARTUP_TIMEOUT_S = 120
# The image limit of the served run of the Google client tests: small, so over-size images are cheap.
GOOGLE_MAX_IMAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Run:
    """A finished run in file:// storage and the ONNX model its Triton repository serves."""

    storage: Storage
    onnx_path: Path

    @property
    def directory(self) -> Path:
        return Path(self.storage.path(RUN.prefix))


def write_run(root: Path, model_card: ModelCard) -> Run:
    """A run as the pipeline leaves it, as far as serving reads it: triton/ and model/model.json."""
    storage = Storage(f"file://{root / 'storage'}")
    onnx_path = make_onnx_classifier(root / "model.onnx", num_labels=len(LABELS))
    write_local_repository(root / "repository", onnx_path, LABELS, PREPROCESS)
    storage.upload_dir(root / "repository", f"{RUN.prefix}/{TRITON_LOCAL}")
    model_dir = ModelLocation(storage, f"{RUN.prefix}/{MODEL_DIR}")
    artifacts = artifact_uris(storage, RUN, model_dir, multi_label=False)
    card = model_card.model_copy(update={"labels": LABELS, "artifacts": artifacts})
    storage.write_json(model_card_key(RUN.prefix), card.to_json())
    return Run(storage, onnx_path)


class Served:
    """``python -m autovision serve`` as a subprocess, its output collected line by line."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "autovision", "serve", *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"}
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_until_ready(self) -> None:
        """Block until the ready line; fail with the output if serve ends or hangs first."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not any(line.startswith("ready") for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve not ready (exit code {self.process.poll()}):\n" + "\n".join(self.lines))
            time.sleep(0.1)

    def endpoint(self, pattern: str) -> str:
        """The first capture of ``pattern`` in the output."""
        found = re.search(pattern, "\n".join(self.lines), re.MULTILINE)
        assert found, "\n".join(self.lines)
        return found.group(1)

    def stop(self, signum: int) -> int:
        """Send ``signum``; the exit code, once all output is read."""
        self.process.send_signal(signum)
        return self.wait()

    def wait(self) -> int:
        """The exit code, once serve has exited and all its output is read."""
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:  # a failed test: let serve stop its tritonserver, or kill serve
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass(frozen=True)
class Endpoints:
    """Where a served run answers: Triton's KServe v2 HTTP (host:port), the gateway's URL and its Google gRPC."""

    kserve_http: str
    gateway: str
    google_grpc: str


def serve_endpoints(served: Served) -> Endpoints:
    """The endpoints ``serve`` printed."""
    return Endpoints(
        kserve_http=served.endpoint(r"^KServe v2 HTTP +http://(\S+)/v2/models/"),
        gateway=served.endpoint(r"^AutoML JSON +POST (http://[^/]+)/v1/models/"),
        google_grpc=served.endpoint(r"^Google gRPC +(\S+) "),
    )


def prediction_log_counts(gateway: str) -> dict[str, float]:
    """A gateway's prediction-log counters, read from its /metrics (logged, dropped, shards_written, ...)."""
    with urllib.request.urlopen(f"{gateway}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.name.removeprefix(f"{METRICS_PREFIX}_").removesuffix("_total"): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(METRICS_PREFIX) and sample.name.endswith("_total")
    }
