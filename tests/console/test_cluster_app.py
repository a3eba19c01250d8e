"""The cluster console as the chart runs it: its login, its guard and its source, against KMock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from autovision.auth.kubernetes import KubeApi
from autovision.console.app import CSRF_COOKIE, CSRF_HEADER
from autovision.console.cluster_app import build_cluster_console_app
from autovision.console.kubernetes_guard import TOKEN_COOKIE
from autovision.storage import Storage
from tests.support.kube import NAMESPACE, ApiServer, declare_resources
from tests.support.reviews import answer_reviews, review_counts

GRANTS = {("alice", "autovision.dev", "datasets", "", "list", NAMESPACE, "")}
Client = TestClient[web.Request, web.Application]

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=ApiServer)]


@pytest_asyncio.fixture
async def console(kmock: Any, tmp_path: Path) -> AsyncIterator[Client]:
    declare_resources(kmock)
    answer_reviews(kmock, GRANTS)
    (tmp_path / "token").write_text("console-token")
    api = KubeApi(str(kmock.url).rstrip("/"), tmp_path / "token")
    app = build_cluster_console_app(NAMESPACE, api=api, storage=Storage(f"file://{tmp_path / 'storage'}"))
    async with TestClient(TestServer(app)) as client:
        yield client


async def login(console: Client, token: str, origin: str | None = None) -> Any:
    """Post the login form as its script does: same origin, with the double-submit CSRF token."""
    await console.get("/login")
    csrf = console.session.cookie_jar.filter_cookies(console.make_url("/"))[CSRF_COOKIE].value
    headers = {"Origin": origin or str(console.make_url("")).rstrip("/"), CSRF_HEADER: csrf}
    return await console.post("/login", data={"token": token}, headers=headers)


async def test_a_browser_without_a_token_is_sent_to_the_login_page(console: Client) -> None:
    first = await console.get("/", allow_redirects=False)
    assert (first.status, first.headers["Location"]) == (303, "/login")
    page = await console.get("/login")
    assert "Paste a Kubernetes token" in await page.text()
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert CSRF_COOKIE in page.cookies
    script = await console.get("/login.js")
    assert script.content_type == "text/javascript"
    assert "X-CSRF-Token" in await script.text()


async def test_anonymous_and_unknown_tokens_get_no_data(console: Client, kmock: Any) -> None:
    assert (await console.get("/api/datasets")).status == 401
    assert (await console.get("/api/datasets", headers={"Authorization": "Bearer stolen-token"})).status == 401
    refused = await console.get("/api/datasets", headers={"Authorization": "Bearer bob-token"})
    assert refused.status == 403
    assert "'bob' may not list datasets" in (await refused.json())["error"]["message"]
    assert (await console.get("/api/runs", headers={"Authorization": "Bearer alice-token"})).status == 403


async def test_logging_in_keeps_the_token_in_an_httponly_cookie(console: Client) -> None:
    wrong = await login(console, "stolen-token")
    assert wrong.status == 401
    assert TOKEN_COOKIE not in wrong.cookies
    reply = await login(console, "alice-token")
    assert reply.status == 204
    cookie = reply.cookies[TOKEN_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert (await console.get("/", allow_redirects=False)).status == 200
    listed = await console.get("/api/datasets")
    assert (listed.status, await listed.json()) == (200, [])
    csrf = console.session.cookie_jar.filter_cookies(console.make_url("/"))[CSRF_COOKIE].value
    origin = str(console.make_url("")).rstrip("/")
    await console.post("/logout", headers={"Origin": origin, CSRF_HEADER: csrf})
    assert (await console.get("/api/datasets")).status == 401


async def test_a_login_from_another_site_is_refused_unasked(console: Client, kmock: Any) -> None:
    reply = await login(console, "alice-token", origin="https://evil.example")
    assert reply.status == 403
    assert review_counts(kmock) == (0, 0)
