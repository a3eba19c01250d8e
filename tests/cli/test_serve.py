"""``autovision serve``: a finished run served in the foreground by the real tritonserver and the gateway.

The run is laid out the way the pipeline lays one out (its Triton repository uploaded under
the run, a model card with the pipeline's artifact URIs), around a tiny ONNX classifier, so
starting the server costs seconds and the served answers can be checked against ONNX Runtime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from autovision.cli import app as cli
from autovision.client import predict_automl
from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR, TRITON_LOCAL, logged_image_key, prediction_log_prefix
from autovision.export.layout import ModelLocation
from autovision.serving import LocalTritonServer, predict
from autovision.serving.client import Protocol
from autovision.serving.prediction_log import read_log
from autovision.serving.tritonserver import endpoint, free_ports
from tests.support.google_clients import ENDPOINT, content, grpc_clients, rest_clients
from tests.support.served import RUN, STARTUP_TIMEOUT_S, Run, Served, serve_endpoints, write_run
from tests.support.serving import (
    TOP_K,
    encode_image,
    needs_tritonserver,
    reference_top_k,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, model_card: ModelCard) -> Run:
    return write_run(tmp_path_factory.mktemp("serve"), model_card)


# --- the served run, end to end --------------------------------------------------------


def tritonserver_children(parent: int) -> list[tuple[int, list[str]]]:
    """The tritonservers ``parent`` started: pid and command line of each."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            command = (status.parent / "cmdline").read_bytes().decode().split("\0")
        except OSError:  # gone meanwhile
            continue
        if int(fields["PPid"]) == parent and command[0].endswith("/tritonserver"):
            found.append((int(status.parent.name), command))
    return found


def left_in_group(pgid: int) -> list[int]:
    """Live processes of a process group: tritonserver's own holds it and its backend stubs.

    Zombies are left out: they are dead, and init reaps those whose parent is gone.
    """
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:  # gone meanwhile
            continue
        if int(group) == pgid and state != "Z":
            left.append(int(stat.parent.name))
    return left


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_answers_on_three_endpoints_then_stops_cleanly(
    run: Run, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    """KServe v2 HTTP and gRPC on the given ports, the gateway on a free one; a signal stops all of it,
    and the prediction log writes what it holds on the way out."""
    http_port, grpc_port = free_ports(2)
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", run.storage.uri(""))
    logging = ("--log-rate", "1", "--log-images")
    with Served(RUN.prefix, "--http-port", str(http_port), "--grpc-port", str(grpc_port), *logging) as served:
        served.wait_until_ready()
        [(triton_pid, command)] = tritonserver_children(served.process.pid)
        urls: dict[Protocol, str] = {
            "http": served.endpoint(r"^KServe v2 HTTP +http://(\S+)/v2/models/autovision/infer$"),
            "grpc": served.endpoint(r"^KServe v2 gRPC +(\S+) \(model autovision\)$"),
        }
        gateway = served.endpoint(r"^AutoML JSON +POST (http://[^/]+)/v1/models/autovision:predict$")
        assert urls == {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}
        assert served.endpoint(r"^serving (\S+)$") == run.storage.uri(f"{RUN.prefix}/{MODEL_DIR}")

        image = encode_image("PNG", 7)
        expected = reference_top_k(run.onnx_path, image)
        for protocol, url in urls.items():
            predictions = predict(image, url, protocol=protocol, top_k=TOP_K)
            assert [p.label for p in predictions] == [label for label, _ in expected], protocol
            np.testing.assert_allclose([p.score for p in predictions], [s for _, s in expected], atol=1e-5)
        automl = predict_automl(image, gateway, score_threshold=0.0)
        assert [p.display_name for p in automl[:TOP_K]] == [label for label, _ in expected]
        np.testing.assert_allclose([p.score for p in automl[:TOP_K]], [s for _, s in expected], atol=1e-5)

        assert served.stop(signum) == 0, "\n".join(served.lines)
    assert served.lines[-1] == "stopped"
    assert left_in_group(triton_pid) == []
    assert all(refuses_connections(int(url.rsplit(":", 1)[1])) for url in [*urls.values(), gateway])
    repository = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--model-repository="))
    assert not Path(repository).parent.exists(), "the downloaded repository is removed"
    log = prediction_log_prefix("local", "autovision")
    assert served.endpoint(r"^Prediction log +100 % of requests to (\S+)$") == run.storage.uri(log)
    sha256 = hashlib.sha256(image).hexdigest()
    records = read_log(run.storage, log)
    assert any(record.sha256 == sha256 and record.model == "autovision" for record in records)
    assert run.storage.read_bytes(logged_image_key(log, sha256)) == image


def test_serve_refuses_a_log_rate_outside_0_to_1(run: Run) -> None:
    result = runner.invoke(
        cli, ["serve", RUN.prefix, "--log-rate", "1.5"], env={"AUTOVISION_STORAGE_ROOT": run.storage.uri("")}
    )
    assert result.exit_code == 2
    assert "--log-rate" in result.output
    assert "less than or equal to 1" in result.output


@pytest.mark.e2e
@needs_tritonserver
def test_serve_on_ipv6_loopback_prints_bracketed_urls_that_answer(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", run.storage.uri(""))
    with Served(RUN.prefix, "--host", "::1") as served:
        served.wait_until_ready()
        urls: dict[Protocol, str] = {
            "http": served.endpoint(r"^KServe v2 HTTP +http://(\S+)/v2/models/autovision/infer$"),
            "grpc": served.endpoint(r"^KServe v2 gRPC +(\S+) \(model autovision\)$"),
        }
        gateway = served.endpoint(r"^AutoML JSON +POST (http://[^/]+)/v1/models/autovision:predict$")
        assert all(re.fullmatch(r"\[::1\]:\d+", url) for url in urls.values()), urls
        assert re.fullmatch(r"http://\[::1\]:\d+", gateway), gateway

        image = encode_image("PNG", 3)
        expected = [label for label, _ in reference_top_k(run.onnx_path, image)]
        for protocol, url in urls.items():
            assert [p.label for p in predict(image, url, protocol=protocol, top_k=TOP_K)] == expected, protocol
        assert [p.display_name for p in predict_automl(image, gateway, score_threshold=0.0)[:TOP_K]] == expected
        assert served.stop(signal.SIGINT) == 0, "\n".join(served.lines)


@pytest.mark.e2e
@pytest.mark.training
@needs_tritonserver
def test_serve_explain_answers_through_the_gateway_with_the_served_prediction(explained_run: ModelLocation) -> None:
    """The explainer's prediction (TorchScript, eager) equals Triton's (the ONNX ensemble): same top-1, scores
    within 1e-4; and :explain is reached through the gateway."""
    with Served(explained_run.uri(), "--explain") as served:
        served.wait_until_ready()
        gateway = served.endpoint(r"^Explanations +POST (http://[^/]+)/v1/models/autovision:explain$")
        image = encode_image("JPEG", 11)
        predicted = predict_automl(image, gateway, score_threshold=0.0)
        body = {
            "payload": {"image": {"imageBytes": base64.b64encode(image).decode()}},
            "params": {"score_threshold": 0},
        }
        request = urllib.request.Request(
            f"{gateway}/v1/models/autovision:explain", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            explained = json.load(response)
        endpoints = serve_endpoints(served)
        vertex = [
            clients.vertex.explain(endpoint=ENDPOINT, instances=[content(image)], parameters={"maxPredictions": 1})
            for clients in (rest_clients(endpoints.gateway), grpc_clients(endpoints.google_grpc))
        ]
        assert served.stop(signal.SIGINT) == 0, "\n".join(served.lines)
    for answer in vertex:  # Vertex AI's client, over REST and gRPC: the served prediction, the explainer's heatmap
        assert list(answer.predictions[0]["displayNames"]) == [predicted[0].display_name]
        (attribution,) = answer.explanations[0].attributions
        assert attribution.output_display_name == predicted[0].display_name
        assert attribution.feature_attributions["overlayPng"] == explained["explanation"]["overlayPng"]
    served_scores = {p.display_name: p.score for p in predicted}
    scores = {item["displayName"]: item["classification"]["score"] for item in explained["payload"]}
    assert explained["payload"][0]["displayName"] == predicted[0].display_name
    assert scores == pytest.approx(served_scores, abs=1e-4)
    assert explained["explanation"]["displayName"] == predicted[0].display_name
    assert explained["explanation"]["overlayPng"]


def test_endpoints_bracket_ipv6_and_reach_wildcards_on_loopback() -> None:
    assert endpoint("127.0.0.1", 80) == "127.0.0.1:80"
    assert endpoint("triton.default.svc", 8001) == "triton.default.svc:8001"
    assert endpoint("::1", 8000) == "[::1]:8000"
    assert endpoint("0.0.0.0", 8000) == "127.0.0.1:8000"
    assert endpoint("::", 8000) == "[::1]:8000"


@pytest.mark.e2e
@needs_tritonserver
def test_sigterm_while_tritonserver_starts_leaves_nothing_behind(run: Run) -> None:
    """tritonserver runs in its own session, so only serve's own cleanup can stop it."""
    with Served(run.storage.uri(RUN.prefix)) as served:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (started := tritonserver_children(served.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started, "\n".join(served.lines)

        code = served.stop(signal.SIGTERM)

    assert code in (0, 130), "\n".join(served.lines)  # 0 if it became ready meanwhile
    assert left_in_group(started[0][0]) == []


@pytest.mark.e2e
@needs_tritonserver
def test_serve_stops_with_an_error_when_tritonserver_dies(run: Run) -> None:
    """No gateway left answering 502s: serve exits non-zero, so a supervisor can restart it."""
    with Served(run.storage.uri(RUN.prefix)) as served:
        served.wait_until_ready()
        [(triton_pid, _)] = tritonserver_children(served.process.pid)
        os.killpg(triton_pid, signal.SIGKILL)  # tritonserver and its backend stubs, as an OOM kill would
        code = served.wait()
    assert code == 1, "\n".join(served.lines)
    assert any("tritonserver exited with code -9" in line for line in served.lines), "\n".join(served.lines)


# --- refusals ------------------------------------------------------------------------


@pytest.fixture
def never_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if tritonserver is started; keep this process's SIGTERM handler as it was."""

    def refuse(self: LocalTritonServer) -> None:
        raise AssertionError("tritonserver must not start")

    monkeypatch.setattr(LocalTritonServer, "start", refuse)
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("never_starts")
@pytest.mark.parametrize(
    ("target", "removed", "message"),
    [
        ("{root}/nowhere", None, "holds no finished model"),
        ("{run}", f"{MODEL_DIR}/{MODEL_CARD}", "holds no finished model"),
        ("runs/local/serve/other", None, "holds no finished model"),
        ("{run}/model", TRITON_LOCAL, "holds no Triton repository"),
    ],
    ids=["missing", "unfinished", "unknown-prefix", "no-repository"],
)
def test_serve_refuses_what_is_not_a_finished_run(
    tmp_path: Path, target: str, removed: str | None, message: str, model_card: ModelCard
) -> None:
    """One error line, a non-zero exit, and no tritonserver."""
    local = write_run(tmp_path, model_card)
    if removed == TRITON_LOCAL:
        shutil.rmtree(local.directory / removed)
    elif removed:
        (local.directory / removed).unlink()
    model = target.format(root=tmp_path, run=local.directory)

    result = runner.invoke(cli, ["serve", model], env={"AUTOVISION_STORAGE_ROOT": local.storage.uri("")})

    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output
