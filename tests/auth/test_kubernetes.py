"""The API client and the token checker against KMock playing the API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
import pytest_asyncio

from autovision.auth.kubernetes import TOKEN_REVIEWS, KubeApi, KubeClient, KubeError, TokenChecker
from autovision.auth.reviews import AccessDeniedError, Permission
from autovision.embedded_s3 import free_port
from tests.support.reviews import answer_reviews, review_counts

LIST = Permission("list", "autovision.dev", "datasets", "ml")
CREATE = Permission("create", "autovision.dev", "datasets", "ml")
GRANTS = {("alice", "autovision.dev", "datasets", "", "list", "ml", "")}

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=kmock.RawHandler)]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture
async def client(kmock: Any, tmp_path: Path) -> AsyncIterator[KubeClient]:
    token_file = tmp_path / "token"
    token_file.write_text("pod-token\n")
    client = KubeClient(KubeApi(str(kmock.url).rstrip("/"), token_file))
    yield client
    await client.close()


async def test_an_allowed_permission_is_reviewed_once_per_ttl(kmock: Any, client: KubeClient) -> None:
    answer_reviews(kmock, GRANTS)
    clock = Clock()
    checker = TokenChecker(client, ttl_s=10.0, clock=clock)
    await checker.check("alice-token", LIST)
    await checker.check("alice-token", LIST)
    assert review_counts(kmock) == (1, 1)
    assert kmock[f"post {TOKEN_REVIEWS}"][0].headers["Authorization"] == "Bearer pod-token", "asks as the pod"
    clock.now = 10.0
    await checker.check("alice-token", LIST)
    assert review_counts(kmock) == (2, 2), "asked again once the allowance expired"


@pytest.mark.parametrize(
    "case",
    [
        ("stolen-token", LIST, 401, "invalid token"),
        ("bob-token", LIST, 403, "'bob' may not list datasets (autovision.dev) in namespace 'ml'"),
        ("alice-token", CREATE, 403, "'alice' may not create datasets"),
    ],
)
async def test_refusals_name_their_reason_and_are_not_remembered(
    kmock: Any, client: KubeClient, case: tuple[str, Permission, int, str]
) -> None:
    token, permission, status, words = case
    answer_reviews(kmock, GRANTS)
    checker = TokenChecker(client)
    for _ in range(2):
        with pytest.raises(AccessDeniedError) as refused:
            await checker.check(token, permission)
        assert refused.value.status == status
        assert words in refused.value.message
    assert review_counts(kmock)[0] == 2


async def test_the_pods_token_is_read_again_for_each_request(kmock: Any, client: KubeClient, tmp_path: Path) -> None:
    kmock["get /api/v1/namespaces/ml"] << {"metadata": {"name": "ml"}}
    await client.get("/api/v1/namespaces/ml")
    (tmp_path / "token").write_text("rotated-token")
    await client.get("/api/v1/namespaces/ml")
    assert [r.headers["Authorization"] for r in kmock["get /api/v1/namespaces/ml"]] == [
        "Bearer pod-token",
        "Bearer rotated-token",
    ]


async def test_a_refusal_keeps_the_api_servers_status_and_message(kmock: Any, client: KubeClient) -> None:
    kmock["get /apis/autovision.dev/v1alpha1/namespaces/ml/datasets/x"] << 404 << {"message": "not found here"}
    with pytest.raises(KubeError) as refused:
        await client.get("/apis/autovision.dev/v1alpha1/namespaces/ml/datasets/x")
    assert (refused.value.status, "not found here" in refused.value.message) == (404, True)


async def test_an_api_server_that_fails_or_is_gone_is_503(kmock: Any, client: KubeClient, tmp_path: Path) -> None:
    kmock[f"post {TOKEN_REVIEWS}"] << 500 << {"message": "etcd is down"}
    with pytest.raises(KubeError) as failed:
        await TokenChecker(client).check("alice-token", LIST)
    assert failed.value.status == 503
    assert "etcd is down" in failed.value.message
    gone = KubeClient(KubeApi(f"http://127.0.0.1:{free_port()}", tmp_path / "token"))
    with pytest.raises(KubeError) as unreachable:
        await gone.get("/api")
    await gone.close()
    assert unreachable.value.status == 503
    assert "did not answer GET /api" in unreachable.value.message
