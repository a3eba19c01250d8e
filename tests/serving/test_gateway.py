"""The AutoML-compatible JSON gateway: pure request/response logic, then real Triton behind it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from autovision.client import predict_automl
from autovision.embedded_s3 import free_port
from autovision.preprocess import PreprocessConfig
from autovision.serving import LocalTritonServer, PredictionError, predict, write_local_repository
from autovision.serving.gateway import (
    GatewayConfig,
    GatewayError,
    GatewayServer,
    build_predict_response,
    parse_predict_request,
)
from tests.support.serving import encode_image, make_onnx_classifier

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
