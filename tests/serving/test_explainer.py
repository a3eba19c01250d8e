"""The explainer answers :explain with the served prediction and a heatmap, within its limits."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from autovision.contract.keys import ONNX_FILE
from autovision.explain.base import MAX_STEPS
from autovision.export.layout import ModelLocation
from autovision.export.onnx_export import onnx_logits
from autovision.preprocess import preprocess_bytes
from autovision.serving.explainer import ExplainerConfig, LoadedModel, create_explainer_app, parse_explain_request
from autovision.serving.gateway import GatewayError
from tests.support.serving import LABELS, PREPROCESS, encode_image, softmax


@pytest.fixture(scope="module")
def loaded(explained_run: ModelLocation) -> LoadedModel:
    return LoadedModel.from_location(explained_run)


def explain(model: LoadedModel, body: Any, config: ExplainerConfig | None = None) -> tuple[int, Any]:
    """POST body to the explainer's :explain; the status and the JSON answer."""

    async def call() -> tuple[int, Any]:
        app = create_explainer_app(model, config or ExplainerConfig())
        async with TestClient(TestServer(app)) as client:
            response = await client.post("/v1/models/autovision:explain", json=body)
            return response.status, await response.json()

    return asyncio.run(call())


def body(image: bytes, **params: Any) -> dict[str, Any]:
    return {"payload": {"image": {"imageBytes": base64.b64encode(image).decode()}}, "params": params}


@pytest.mark.training
@pytest.mark.parametrize("method", ["grad_cam", "integrated_gradients"])
def test_the_prediction_equals_the_exported_onnx_models_and_a_heatmap_comes_with_it(
    explained_run: ModelLocation, loaded: LoadedModel, method: str
) -> None:
    image = encode_image("JPEG", 3)
    status, answer = explain(loaded, body(image, score_threshold=0.0, method=method, steps=8, grid=4))
    assert status == 200, answer
    served = softmax(
        onnx_logits(
            Path(explained_run.storage.path(explained_run.key(ONNX_FILE))), preprocess_bytes(image, PREPROCESS)[None]
        )
    )[0]
    scores = {item["displayName"]: item["classification"]["score"] for item in answer["payload"]}
    assert answer["payload"][0]["displayName"] == LABELS[int(served.argmax())]
    assert [scores[label] for label in LABELS] == pytest.approx(served.tolist(), abs=1e-4)
    explanation = answer["explanation"]
    assert explanation["displayName"] == answer["payload"][0]["displayName"]
    assert explanation["method"] == method
    assert len(explanation["grid"]) == 4
    assert max(max(row) for row in explanation["grid"]) == pytest.approx(1.0)
    overlay = Image.open(io.BytesIO(base64.b64decode(explanation["overlayPng"])))
    assert overlay.format == "PNG"
    assert overlay.width >= PREPROCESS.size


@pytest.mark.training
def test_a_label_asked_for_is_explained_and_the_threshold_applies_to_the_prediction(loaded: LoadedModel) -> None:
    status, answer = explain(loaded, body(encode_image("PNG", 1), label="tulips", score_threshold=1.0))
    assert status == 200, answer
    assert answer["payload"] == []
    assert answer["explanation"]["displayName"] == "tulips"
    assert "steps" not in answer["explanation"]


@pytest.mark.training
@pytest.mark.parametrize(
    ("params", "status", "reason"),
    [
        ({"label": "zebra"}, 400, "'zebra' is not a label of this model"),
        ({"method": "integrated_gradients", "steps": MAX_STEPS + 1}, 400, f"steps must be in 1..{MAX_STEPS}"),
        ({"method": "xrai"}, 400, "unknown explanation method"),
        ({"steps": "many"}, 400, "params.steps must be an integer"),
    ],
)
def test_bad_params_get_a_400_with_the_reason(
    loaded: LoadedModel, params: dict[str, Any], status: int, reason: str
) -> None:
    code, answer = explain(loaded, body(encode_image("PNG", 2), **params))
    assert code == status
    assert reason in answer["error"]["message"]


@pytest.mark.training
def test_an_explanation_past_its_time_limit_gets_a_504_and_the_next_one_is_served(loaded: LoadedModel) -> None:
    slow = body(encode_image("PNG", 2), method="integrated_gradients", steps=MAX_STEPS)
    code, answer = explain(loaded, slow, ExplainerConfig(time_limit_s=0.0))
    assert code == 504
    assert "longer than its 0 s limit" in answer["error"]["message"]
    assert explain(loaded, body(encode_image("PNG", 2)))[0] == 200


@pytest.mark.training
def test_the_request_limits_are_the_gateways(loaded: LoadedModel) -> None:
    image = encode_image("PNG", 4)
    code, answer = explain(loaded, body(image), ExplainerConfig(max_image_bytes=len(image) - 1))
    assert code == 413
    assert "byte limit" in answer["error"]["message"]
    assert explain(loaded, {"payload": {}})[0] == 400
    code, answer = explain(loaded, body(image), ExplainerConfig(max_image_pixels=40 * 30 - 1))
    assert code == 400
    assert "pixel limit" in answer["error"]["message"]
    code, answer = explain(loaded, body(b"not an image"))
    assert code == 400
    assert "cannot be decoded" in answer["error"]["message"]


def test_parsing_reuses_the_predict_request_and_refuses_a_label_that_is_not_a_name() -> None:
    parsed = parse_explain_request(body(b"png", steps=4, method="integrated_gradients"), 100, 0.5)
    assert parsed.predict.image == b"png"
    assert parsed.settings.steps == 4
    with pytest.raises(GatewayError, match=r"params\.label must be a label name"):
        parse_explain_request(body(b"png", label=3), 100, 0.5)
    with pytest.raises(GatewayError, match="byte limit"):
        parse_explain_request(body(b"png" * 100), 100, 0.5)


@pytest.mark.training
def test_a_body_that_never_comes_gets_a_408_like_the_gateways(loaded: LoadedModel) -> None:
    async def stalled_status() -> bytes:
        server = TestServer(create_explainer_app(loaded, ExplainerConfig(body_timeout_s=0.2)))
        await server.start_server()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            # Headers announcing a body that never comes.
            writer.write(
                b"POST /v1/models/autovision:explain HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            return status
        finally:
            await server.close()

    assert asyncio.run(stalled_status()).startswith(b"HTTP/1.1 408")
