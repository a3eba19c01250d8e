"""The gateway's :explain: 404 with the reason when no explainer is set, else the explainer's answer as is."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from autovision.embedded_s3 import free_port
from autovision.export.layout import ModelLocation
from autovision.serving.explain_route import NOT_ENABLED
from autovision.serving.explainer import ExplainerConfig, LoadedModel, create_explainer_app
from autovision.serving.gateway import GatewayConfig, create_app
from tests.support.serving import LABELS, encode_image

PATH = "/v1/models/autovision:explain"


def request_body() -> dict[str, Any]:
    return {"payload": {"image": {"imageBytes": base64.b64encode(encode_image("PNG", 5)).decode()}}}


async def through_gateway(explainer_url: str | None, path: str = PATH) -> tuple[int, Any]:
    gateway = create_app(GatewayConfig("127.0.0.1:1", explainer_url=explainer_url))
    async with TestClient(TestServer(gateway)) as client:
        response = await client.post(path, json=request_body())
        return response.status, await response.json()


def test_without_an_explainer_explain_answers_404_saying_explanations_are_not_enabled() -> None:
    status, answer = asyncio.run(through_gateway(None))
    assert status == 404
    assert answer["error"]["message"] == NOT_ENABLED


def test_an_unreachable_explainer_is_a_503() -> None:
    status, answer = asyncio.run(through_gateway(f"http://127.0.0.1:{free_port()}"))
    assert status == 503
    assert "the explainer is unreachable" in answer["error"]["message"]


@pytest.mark.training
def test_the_gateway_relays_the_explainers_answer_and_its_refusals(explained_run: ModelLocation) -> None:
    model = LoadedModel.from_location(explained_run)

    async def scenario() -> tuple[tuple[int, Any], tuple[int, Any], tuple[int, Any]]:
        async with TestServer(create_explainer_app(model, ExplainerConfig())) as explainer:
            url = str(explainer.make_url(""))
            direct = await through_gateway(url)
            other_name = await through_gateway(url, "/v1/models/other:explain")
            async with (
                aiohttp.ClientSession() as session,
                session.post(url.rstrip("/") + PATH, json=request_body()) as response,
            ):
                return direct, other_name, (response.status, await response.json())

    (status, answer), (other_status, _), (direct_status, direct) = asyncio.run(scenario())
    assert status == direct_status == 200
    assert answer == direct
    assert answer["explanation"]["displayName"] in LABELS
    assert other_status == 404
