"""The AutoML-compatible JSON gateway: pure request/response logic, then real Triton behind it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from autovision.client import predict_automl
from autovision.contract import env
from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.contract.keys import logged_image_key, prediction_log_prefix
from autovision.embedded_s3 import EmbeddedS3, free_port
from autovision.preprocess import PreprocessConfig
from autovision.serving import LocalTritonServer, PredictionError, predict, write_local_repository
from autovision.serving.gateway import (
    Admission,
    GatewayConfig,
    GatewayError,
    GatewayServer,
    ModelOutputs,
    build_predict_response,
    parse_predict_request,
)
from autovision.serving.prediction_log import LogSettings, read_log
from autovision.serving.traffic import Backend, Routes
from autovision.settings import Settings
from autovision.storage import Storage
from tests.support.served import prediction_log_counts
from tests.support.serving import (
    POLICY_BUDGET,
    POLICY_LIMITS,
    CappedTritonServer,
    encode_image,
    make_onnx_classifier,
    needs_tritonserver,
)

LABELS = ["cat", "dog", "fox"]


def _body(data: bytes, **params: str) -> dict[str, Any]:
    body: dict[str, Any] = {"payload": {"image": {"imageBytes": base64.b64encode(data).decode()}}}
    if params:
        body["params"] = params
    return body


def test_parse_accepts_automl_request() -> None:
    parsed = parse_predict_request(_body(b"abc", score_threshold="0.25"), max_image_bytes=10, default_threshold=0.5)
    assert (parsed.image, parsed.score_threshold) == (b"abc", 0.25)
    assert parse_predict_request(_body(b"abc"), 10, 0.5).score_threshold == 0.5


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([], 400, "expected"),
        ({"payload": {}}, 400, "expected"),
        ({"payload": {"image": {"imageBytes": "***"}}}, 400, "not valid base64"),
        (_body(b"x" * 11), 413, "exceeds the 10-byte limit"),
        (_body(b"x", score_threshold="high"), 400, "must be a number"),
        (_body(b"x", score_threshold="1.5"), 400, "must be in"),
    ],
)
def test_parse_refuses_bad_requests(body: Any, status: int, message: str) -> None:
    with pytest.raises(GatewayError, match=message) as caught:
        parse_predict_request(body, max_image_bytes=10, default_threshold=0.5)
    assert caught.value.status == status


def test_response_keeps_labels_at_or_above_threshold_best_first() -> None:
    response = build_predict_response([("a", 0.2), ("b", 0.7), ("c", 0.5)], score_threshold=0.5)
    assert response == {
        "payload": [
            {"displayName": "b", "classification": {"score": 0.7}},
            {"displayName": "c", "classification": {"score": 0.5}},
        ]
    }


def test_the_model_s_outputs_say_whether_it_exports_an_embedding() -> None:
    scores = {"name": "SCORES", "datatype": "FP32", "shape": [-1, 3]}
    embedding = {"name": EMBEDDING_OUTPUT, "datatype": "FP32", "shape": [-1, 16]}
    assert ModelOutputs.from_metadata({"outputs": [scores]}) == ModelOutputs(num_labels=3, embedding=False)
    assert ModelOutputs.from_metadata({"outputs": [embedding, scores]}) == ModelOutputs(num_labels=3, embedding=True)


def test_routes_come_from_the_environment_else_the_one_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewayConfig.from_settings("t:8000", Settings()).routing() == Routes.single("autovision", "t:8000")
    split = Routes(
        backends=(Backend(run="a", triton_url="a:8000", percent=90), Backend(run="b", triton_url="b:8000", percent=10))
    )
    monkeypatch.setenv(env.GATEWAY_ROUTES, split.model_dump_json())
    assert GatewayConfig.from_settings("t:8000", Settings()).routing() == split
    monkeypatch.setenv(env.GATEWAY_ROUTES, split.model_dump_json().replace("90", "80"))
    with pytest.raises(ValidationError, match="sum to 90, not 100"):
        Settings()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalTritonServer, GatewayServer]]:
    """Real tritonserver with a small model, and the gateway in front of it (image limit 64 KiB)."""
    workdir = tmp_path_factory.mktemp("gateway")
    onnx_path = make_onnx_classifier(workdir / "model.onnx", num_labels=len(LABELS))
    write_local_repository(workdir / "repository", onnx_path, LABELS, PreprocessConfig(size=16))
    with (
        LocalTritonServer(workdir / "repository", work_dir=workdir / "triton") as server,
        GatewayServer(GatewayConfig(server.http_url, max_image_bytes=64 * 1024), free_port()) as gateway,
    ):
        yield server, gateway


def _post(url: str, data: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.e2e
@pytest.mark.tritonserver
def test_gateway_answers_like_triton(deployment: tuple[LocalTritonServer, GatewayServer]) -> None:
    server, gateway = deployment
    image = encode_image("JPEG", seed=3)
    automl = predict_automl(image, gateway.url, score_threshold=0.0)
    kserve = predict(image, server.http_url, top_k=len(LABELS))
    assert [p.display_name for p in automl] == [p.label for p in kserve]
    assert [p.score for p in automl] == pytest.approx([p.score for p in kserve], abs=1e-6)
    best = automl[0].score
    assert [p.display_name for p in predict_automl(image, gateway.url, score_threshold=best)] == [
        automl[0].display_name
    ]


@pytest.mark.e2e
@pytest.mark.tritonserver
@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        ("autovision", json.dumps(_body(b"not an image")).encode(), 400, "decodable"),
        ("autovision", b'{"payload": {"image": {"imageBytes": "%%%"}}}', 400, "base64"),
        ("autovision", b"{not json", 400, "not JSON"),
        ("autovision", json.dumps(_body(b"\xff" * (65 * 1024))).encode(), 413, "limit"),
        ("autovision", b"x" * (200 * 1024), 413, "request body exceeds"),
        ("other", json.dumps(_body(b"x")).encode(), 404, "not served here"),
    ],
)
def test_gateway_bad_requests(
    deployment: tuple[LocalTritonServer, GatewayServer], path: str, payload: bytes, status: int, message: str
) -> None:
    _, gateway = deployment
    code, answer = _post(f"{gateway.url}/v1/models/{path}:predict", payload)
    assert code == status
    assert message in answer["error"]["message"]
    assert predict_automl(encode_image("PNG", seed=1), gateway.url) is not None  # still healthy


@pytest.mark.e2e
@pytest.mark.tritonserver
def test_client_reports_gateway_errors(deployment: tuple[LocalTritonServer, GatewayServer]) -> None:
    _, gateway = deployment
    with pytest.raises(PredictionError, match="HTTP 400"):
        predict_automl(b"not an image", gateway.url, retries=0)
    with pytest.raises(PredictionError, match="unreachable"):
        predict_automl(b"x", f"http://127.0.0.1:{free_port()}", retries=1, timeout_s=2)


UPSTREAM_TIMEOUT_S = 3.0


def test_admission_refuses_at_once_when_slots_and_queue_are_full() -> None:
    async def scenario() -> tuple[int, int | None]:
        admission = Admission(slots=1, queue=1)
        release = asyncio.Event()

        async def hold() -> None:
            async with admission.slot():
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(2)]  # one at work, one queued
        await asyncio.sleep(0)
        with pytest.raises(GatewayError) as refused:
            async with admission.slot():
                pass
        release.set()
        await asyncio.gather(*holders)
        async with admission.slot():  # free again
            pass
        return refused.value.status, refused.value.retry_after_s

    assert asyncio.run(scenario()) == (503, 1)


def post(url: str, body: dict[str, Any] | bytes, timeout_s: float = 30) -> tuple[int, dict[str, Any], Any]:
    """Status, JSON answer and headers of one POST."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


def automl(image: bytes) -> dict[str, Any]:
    return {"payload": {"image": {"imageBytes": base64.b64encode(image).decode()}}, "params": {"score_threshold": 0}}


def healthz(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("gateway_bounds")
    onnx_path = make_onnx_classifier(workdir / "model.onnx", num_labels=len(LABELS))
    return write_local_repository(
        workdir / "repository", onnx_path, LABELS, PreprocessConfig(size=16), budget=POLICY_BUDGET
    ).parent


@pytest.fixture(scope="module")
def bounded_deployment(repository: Path) -> Iterator[tuple[CappedTritonServer, GatewayServer]]:
    """A capped tritonserver and a gateway allowing one request at work and none waiting."""
    config = GatewayConfig(
        "", max_image_bytes=POLICY_LIMITS.max_bytes, max_concurrency=1, max_queue=0, body_timeout_s=1.0
    )
    with CappedTritonServer(repository) as triton:
        config.triton_url = triton.http_url
        with GatewayServer(config, free_port()) as gateway:
            yield triton, gateway


@pytest.mark.e2e
@needs_tritonserver
def test_gateway_applies_the_image_policy(
    bounded_deployment: tuple[CappedTritonServer, GatewayServer],
    claimed_png: Callable[[int, int], bytes],
    flat_png: Callable[..., bytes],
) -> None:
    url = f"{bounded_deployment[1].url}/v1/models/autovision:predict"
    assert post(url, automl(flat_png(4000, 2000)))[0] == 200
    for image in (flat_png(4000, 2001), claimed_png(30_000, 30_000)):
        status, answer, _ = post(url, automl(image))
        assert (status, "8000000-pixel limit" in answer["error"]["message"]) == (400, True)
    status, answer, _ = post(url, automl(b"\0" * (POLICY_LIMITS.max_bytes + 1)))
    assert (status, "1048576-byte limit" in answer["error"]["message"]) == (413, True)


@pytest.mark.e2e
@needs_tritonserver
def test_full_queue_answers_503_then_a_stalled_body_times_out_and_service_resumes(
    bounded_deployment: tuple[CappedTritonServer, GatewayServer],
) -> None:
    gateway = bounded_deployment[1]
    url = f"{gateway.url}/v1/models/autovision:predict"
    with socket.create_connection(("127.0.0.1", gateway.port)) as stalled:
        # Headers announcing a body that never comes: it holds the only slot until the body timeout.
        stalled.sendall(
            b"POST /v1/models/autovision:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        time.sleep(0.3)
        started = time.monotonic()
        status, answer, headers = post(url, automl(encode_image("PNG", seed=1)))
        assert (status, headers["Retry-After"]) == (503, "1")
        assert "busy" in answer["error"]["message"]
        assert time.monotonic() - started < 0.5  # refused at once, not after waiting
        stalled.settimeout(10)
        assert stalled.recv(100).startswith(b"HTTP/1.1 408")
    assert post(url, automl(encode_image("PNG", seed=1)))[0] == 200


@pytest.mark.e2e
@needs_tritonserver
def test_triton_killed_and_restarted_under_traffic(repository: Path) -> None:
    """While Triton is gone every answer is 200 or a prompt 503 with Retry-After; then it serves again."""
    triton = CappedTritonServer(repository)
    triton.start()
    config = GatewayConfig(triton.http_url, upstream_timeout_s=UPSTREAM_TIMEOUT_S)
    answers: list[tuple[int, float, str | None]] = []
    stop = threading.Event()
    with GatewayServer(config, free_port()) as gateway:
        url = f"{gateway.url}/v1/models/autovision:predict"

        def traffic() -> None:
            while not stop.is_set():
                started = time.monotonic()
                status, _, headers = post(url, automl(encode_image("JPEG", seed=2)))
                answers.append((status, time.monotonic() - started, headers.get("Retry-After")))
                time.sleep(0.05)

        sender = threading.Thread(target=traffic)
        sender.start()
        try:
            time.sleep(1)
            assert triton.pid is not None
            os.killpg(triton.pid, signal.SIGKILL)
            triton.stop()
            time.sleep(2)
            assert healthz(gateway.url) == 503
            gone = len(answers)
            triton = CappedTritonServer(repository, http_port=int(triton.http_url.rsplit(":", 1)[1]))
            triton.start()
            assert healthz(gateway.url) == 200
            time.sleep(1)
        finally:
            stop.set()
            sender.join()
            triton.stop()
    statuses = {status for status, _, _ in answers}
    assert statuses == {200, 503}, answers
    assert all(retry == "5" for status, _, retry in answers if status == 503)
    assert max(seconds for _, seconds, _ in answers) < UPSTREAM_TIMEOUT_S + 2
    assert answers[-1][0] == 200
    assert gone < len(answers)


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll ``condition`` every 0.1 s until it holds or ``timeout_s`` passes; whether it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.e2e
@needs_tritonserver
def test_a_stopped_storage_never_fails_a_request_and_the_log_resumes_once_it_is_back(
    deployment: tuple[LocalTritonServer, GatewayServer], embedded_s3: EmbeddedS3
) -> None:
    """SeaweedFS stopped under a logging gateway: every request answers 200 promptly, the shards are lost and
    counted; once it is back the log writes again, and every shard written reads back whole."""
    settings = embedded_s3.settings(prefix="stopped-storage")
    log = LogSettings(
        rate=1.0,
        images=True,
        storage=settings,
        namespace="ml",
        deployment="flowers",
        shard_records=5,
        flush_seconds=0.2,
        write_timeout_s=2.0,
    )
    images = [encode_image("PNG", seed=seed, size=(12, 10)) for seed in range(10)]
    storage, prefix = Storage.from_settings(settings), prediction_log_prefix("ml", "flowers")
    with GatewayServer(GatewayConfig(deployment[0].http_url, logging=log), free_port()) as gateway:
        url = f"{gateway.url}/v1/models/autovision:predict"
        embedded_s3.stop()
        try:
            latencies = []
            for image in images:
                started = time.monotonic()
                assert post(url, automl(image))[0] == 200
                latencies.append(time.monotonic() - started)
            assert wait_for(lambda: prediction_log_counts(gateway.url)["write_failures"] >= 1)
            assert max(latencies) < log.write_timeout_s, "a request waited for storage"
            assert prediction_log_counts(gateway.url)["shards_written"] == 0
        finally:
            embedded_s3.start()
        sent_since: list[bytes] = []

        def resumed() -> bool:
            """Send one more image; whether any image sent since S3 came back is in a shard yet."""
            sent_since.append(encode_image("PNG", seed=100 + len(sent_since), size=(12, 10)))
            assert post(url, automl(sent_since[-1]))[0] == 200
            return bool({sha256(image) for image in sent_since} & logged(storage, prefix))

        # Shards that meet a write still hanging from the outage are lost; the log writes again after it.
        assert wait_for(resumed, timeout_s=30)
    records = read_log(storage, prefix)
    assert {record.sha256 for record in records} <= {sha256(image) for image in [*images, *sent_since]}
    assert all(storage.exists(logged_image_key(prefix, record.sha256)) for record in records)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def logged(storage: Storage, prefix: str) -> set[str]:
    """The sha256 of every image logged in the shards under ``prefix`` (each shard read back whole)."""
    return {record.sha256 for record in read_log(storage, prefix)}
