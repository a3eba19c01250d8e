"""The gateway's token checks against KMock answering TokenReview and SubjectAccessReview.

No real kube-apiserver runs here: KMock stands in for it (the sanctioned stand-in of
the kopf tests), playing its authenticator with a table of tokens and its RBAC
authorizer with a table of grants. The gateway runs for real, REST and gRPC, with no
Triton behind it: the routes a token reaches without Triton (Vertex's GetEndpoint)
show a caller let through, and every refusal happens before any model work. Google's
own clients get their own exception classes for 401 and 403.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import kmock
import pytest
import pytest_asyncio
from google.api_core import exceptions
from google.cloud import aiplatform_v1
from google.cloud.aiplatform_v1.services.endpoint_service.transports.grpc import EndpointServiceGrpcTransport
from google.oauth2.credentials import Credentials

from autovision.auth.kubernetes import ACCESS_REVIEWS, TOKEN_REVIEWS, KubeApi
from autovision.embedded_s3 import free_port
from autovision.serving.access import AccessConfig, predict_permission
from autovision.serving.gateway import GatewayConfig, GatewayServer
from autovision.serving.traffic import STATS_PATH
from tests.support.reviews import answer_reviews, review_counts

NAMESPACE, NAME = "ml", "flowers"
GATEWAY_TOKEN = "gateway-service-account-token"
GRANTS = {("alice", "autovision.dev", "modeldeployments", "predict", "create", NAMESPACE, NAME)}
ENDPOINT = f"projects/p/locations/l/endpoints/{NAME}"


@dataclass(frozen=True)
class Gateway:
    """The gateway under test: its REST URL, its gRPC address, and the API server it asks."""

    url: str
    grpc: str
    api: Any


@pytest_asyncio.fixture
async def gateway(kmock: Any, tmp_path: Path) -> AsyncIterator[Gateway]:
    answer_reviews(kmock, GRANTS)
    token_file = tmp_path / "token"
    token_file.write_text(GATEWAY_TOKEN + "\n")
    access = AccessConfig(predict_permission(NAMESPACE, NAME), KubeApi(str(kmock.url).rstrip("/"), token_file))
    grpc_address = f"127.0.0.1:{free_port()}"
    # Triton is not running: only the checks and Triton-free routes are exercised.
    config = GatewayConfig(f"127.0.0.1:{free_port()}", public_name=NAME, grpc_address=grpc_address, access=access)
    server = GatewayServer(config, free_port())
    await asyncio.to_thread(server.start)
    try:
        yield Gateway(server.url, grpc_address, kmock)
    finally:
        await asyncio.to_thread(server.stop)


async def get(gateway: Gateway, path: str, token: str | None) -> tuple[int, dict[str, Any], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.get(gateway.url + path, headers=headers) as reply:
        return reply.status, dict(reply.headers), await reply.json()


pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=kmock.RawHandler)]


async def test_an_allowed_token_gets_an_answer_and_is_reviewed_once_per_ttl(gateway: Gateway) -> None:
    status, _, body = await get(gateway, f"/v1/{ENDPOINT}", "alice-token")
    assert status == 200, body
    assert body["name"] == ENDPOINT
    token_review = gateway.api[f"post {TOKEN_REVIEWS}"][0]
    assert token_review.data["spec"] == {"token": "alice-token"}
    assert token_review.headers["Authorization"] == f"Bearer {GATEWAY_TOKEN}", "the gateway asks as itself"
    attributes = gateway.api[f"post {ACCESS_REVIEWS}"][0].data["spec"]["resourceAttributes"]
    assert attributes == {
        "group": "autovision.dev",
        "resource": "modeldeployments",
        "subresource": "predict",
        "verb": "create",
        "namespace": NAMESPACE,
        "name": NAME,
    }
    assert (await get(gateway, f"/v1/{ENDPOINT}", "alice-token"))[0] == 200
    assert review_counts(gateway.api) == (1, 1), "an allowed token is remembered"


@pytest.mark.parametrize(
    ("token", "status", "google_status", "words"),
    [
        (None, 401, "UNAUTHENTICATED", "requires a Kubernetes token"),
        ("stolen-token", 401, "UNAUTHENTICATED", "invalid token"),
        ("bob-token", 403, "PERMISSION_DENIED", "'bob' may not create modeldeployments/predict"),
    ],
)
async def test_refusals_over_rest_are_in_googles_shape(
    gateway: Gateway, token: str | None, status: int, google_status: str, words: str
) -> None:
    got, headers, body = await get(gateway, f"/v1/{ENDPOINT}", token)
    assert got == status
    assert body["error"]["code"] == status
    assert body["error"]["status"] == google_status
    assert words in body["error"]["message"]
    assert (headers.get("WWW-Authenticate") == "Bearer") == (status == 401)


async def test_refusals_are_never_remembered(gateway: Gateway) -> None:
    for _ in range(2):
        assert (await get(gateway, f"/v1/{ENDPOINT}", "bob-token"))[0] == 403
    assert review_counts(gateway.api) == (2, 2)


async def test_the_automl_json_path_needs_a_token_too(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway.url}/v1/models/{NAME}:predict", json={}) as reply:
            assert reply.status == 401
            assert (await reply.json())["error"]["code"] == 401
        async with session.post(
            f"{gateway.url}/v1/models/{NAME}:predict", json={}, headers={"Authorization": "Bearer bob-token"}
        ) as reply:
            assert reply.status == 403
        async with session.post(
            f"{gateway.url}/v1/models/{NAME}:predict", json={}, headers={"Authorization": "Bearer alice-token"}
        ) as reply:
            assert reply.status == 400, "past the check, the body itself is refused"


async def test_traffic_statistics_need_a_token(gateway: Gateway) -> None:
    assert (await get(gateway, STATS_PATH, None))[0] == 401
    status, _, body = await get(gateway, STATS_PATH, "alice-token")
    assert status == 200
    assert body["models"]["autovision"]["requests"] == 0


async def test_health_needs_no_token(gateway: Gateway) -> None:
    status, _, body = await get(gateway, "/healthz", None)
    assert (status, body) == (503, {"ready": False}), "Triton is not running; no 401"
    assert review_counts(gateway.api) == (0, 0)


async def test_an_api_server_that_cannot_answer_makes_the_gateway_unavailable(gateway: Gateway) -> None:
    (gateway.api**100)["post /apis/authentication.k8s.io/v1/tokenreviews"] << 500 << {"message": "etcd is down"}
    status, headers, body = await get(gateway, f"/v1/{ENDPOINT}", "carol-token")
    assert status == 503
    assert body["error"]["status"] == "UNAVAILABLE"
    assert "cannot check the token" in body["error"]["message"]
    assert "Retry-After" in headers


def rest_endpoint_client(gateway: Gateway, token: str) -> aiplatform_v1.EndpointServiceClient:
    """Vertex's EndpointService client over REST with a bearer token, as a user would build it."""

    # On a 401 the client refreshes its credentials and tries once more: a Kubernetes token is
    # refreshed by reading it again (here: the same one), as the README shows.
    def refresh(request: Any, scopes: Any) -> tuple[str, dt.datetime]:
        return token, dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)

    credentials = Credentials(token=token, refresh_handler=refresh)  # type: ignore[no-untyped-call]
    options = {"api_endpoint": gateway.url}
    return aiplatform_v1.EndpointServiceClient(credentials=credentials, transport="rest", client_options=options)


@pytest.mark.parametrize(
    ("token", "error"), [("stolen-token", exceptions.Unauthorized), ("bob-token", exceptions.Forbidden)]
)
async def test_googles_rest_client_raises_its_own_exceptions(
    gateway: Gateway, token: str, error: type[Exception]
) -> None:
    client = rest_endpoint_client(gateway, token)
    with pytest.raises(error):
        await asyncio.to_thread(client.get_endpoint, name=ENDPOINT)
    answer = await asyncio.to_thread(rest_endpoint_client(gateway, "alice-token").get_endpoint, name=ENDPOINT)
    assert answer.name == ENDPOINT


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (None, exceptions.Unauthenticated),
        ("stolen-token", exceptions.Unauthenticated),
        ("bob-token", exceptions.PermissionDenied),
    ],
)
async def test_googles_grpc_client_raises_its_own_exceptions(
    gateway: Gateway, token: str | None, error: type[Exception]
) -> None:
    channel = grpc.insecure_channel(gateway.grpc)
    client = aiplatform_v1.EndpointServiceClient(transport=EndpointServiceGrpcTransport(channel=channel))
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with pytest.raises(error):
        await asyncio.to_thread(client.get_endpoint, name=ENDPOINT, metadata=metadata)
    allowed = [("authorization", "Bearer alice-token")]
    answer = await asyncio.to_thread(client.get_endpoint, name=ENDPOINT, metadata=allowed)
    assert answer.name == ENDPOINT
    channel.close()
