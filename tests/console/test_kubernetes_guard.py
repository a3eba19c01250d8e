"""The console's guard against KMock playing the API server's authenticator and RBAC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from autovision.auth.kubernetes import TOKEN_REVIEWS, KubeApi, KubeClient, TokenChecker
from autovision.console.kubernetes_guard import TOKEN_COOKIE, KubernetesGuard, permission
from tests.support.reviews import answer_reviews, review_counts

NAMESPACE = "ml"
GRANTS = {
    ("alice", "autovision.dev", "datasets", "", "list", NAMESPACE, ""),
    ("alice", "autovision.dev", "modeldeployments", "predict", "create", NAMESPACE, "flowers"),
    ("bob", "autovision.dev", "datasets", "", "list", NAMESPACE, ""),
}

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=kmock.RawHandler)]


@pytest_asyncio.fixture
async def console(kmock: Any, tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """An app whose routes check as the console's do, before answering."""
    answer_reviews(kmock, GRANTS)
    (tmp_path / "token").write_text("console-token")
    client = KubeClient(KubeApi(str(kmock.url).rstrip("/"), tmp_path / "token"))
    guard = KubernetesGuard(TokenChecker(client), NAMESPACE)

    def checked(verb: str, resource: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            await guard.check(request, verb, resource)
            return web.json_response({"ok": True})

        return handler

    app = web.Application()
    app.add_routes(
        [
            web.get("/api/datasets", checked("list", "datasets")),
            web.post("/api/datasets", checked("create", "datasets")),
            web.get("/api/namespaces/{namespace}/datasets", checked("list", "datasets")),
            web.post("/api/deployments/{name}/predict", checked("create", "modeldeployments/predict")),
        ]
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await client.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_anonymous_and_unknown_tokens_are_refused(console: Any, kmock: Any) -> None:
    reply = await console.get("/api/datasets")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert "log in with a Kubernetes token" in await reply.text()
    assert review_counts(kmock) == (0, 0), "no token, no review"
    for headers in (bearer("stolen-token"), {"Authorization": "Basic YTpi"}):
        assert (await console.get("/api/datasets", headers=headers)).status == 401
    assert (await console.get("/api/datasets", cookies={TOKEN_COOKIE: "stolen-token"})).status == 401


async def test_rbac_decides_each_verb_and_resource(console: Any, kmock: Any) -> None:
    assert (await console.get("/api/datasets", headers=bearer("alice-token"))).status == 200
    refused = await console.post("/api/datasets", headers=bearer("alice-token"))
    assert refused.status == 403
    assert "'alice' may not create datasets (autovision.dev) in namespace 'ml'" in await refused.text()
    assert (await console.post("/api/deployments/flowers/predict", headers=bearer("alice-token"))).status == 200
    assert (await console.post("/api/deployments/flowers/predict", headers=bearer("bob-token"))).status == 403
    attributes = kmock["post /apis/authorization.k8s.io/v1/subjectaccessreviews"][2].data["spec"]
    assert attributes["resourceAttributes"]["name"] == "flowers", "predict is asked of the deployment by name"


async def test_allowances_are_cached_per_permission_and_refusals_never(console: Any, kmock: Any) -> None:
    for _ in range(3):
        assert (await console.get("/api/datasets", headers=bearer("alice-token"))).status == 200
    assert review_counts(kmock) == (1, 1)
    for _ in range(2):
        assert (await console.post("/api/datasets", headers=bearer("alice-token"))).status == 403
    assert review_counts(kmock) == (3, 3)


async def test_another_namespace_is_not_served(console: Any, kmock: Any) -> None:
    assert (await console.get("/api/namespaces/ml/datasets", headers=bearer("alice-token"))).status == 200
    other = await console.get("/api/namespaces/kube-system/datasets", headers=bearer("alice-token"))
    assert other.status == 404
    assert review_counts(kmock) == (1, 1)


async def test_an_api_server_that_fails_is_503_not_a_way_in(console: Any, kmock: Any) -> None:
    (kmock**10)[f"post {TOKEN_REVIEWS}"] << 500 << {"message": "etcd is down"}
    reply = await console.get("/api/datasets", headers=bearer("carol-token"))
    assert reply.status == 503
    assert "etcd is down" in await reply.text()


async def test_permissions_name_the_object_only_where_rbac_can_use_it() -> None:
    assert permission("list", "datasets", "ml", "x").name == ""
    assert permission("create", "trainingjobs", "ml", "x").name == ""
    assert permission("get", "datasets", "ml", "x").name == "x"
    predict = permission("create", "modeldeployments/predict", "ml", "flowers")
    assert (predict.resource, predict.subresource, predict.name) == ("modeldeployments", "predict", "flowers")
