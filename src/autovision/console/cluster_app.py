"""The console as the chart runs it in a cluster: ClusterSource, KubernetesGuard and a login form.

``build_cluster_console_app`` puts the cluster's parts into the console's app:
the data of one namespace through the Kubernetes API and the operator's storage,
every API call checked against the caller's own RBAC, and a login page that takes a
Kubernetes token (as the Kubernetes Dashboard does) and keeps it in an HttpOnly
cookie. ``main`` serves it: ``python -m autovision.console.cluster_app --namespace
NS``, listening on all addresses of the pod (the NetworkPolicy and a login guard
it; nothing is served anonymously but the page's own files).
"""

from __future__ import annotations

import argparse
import html
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Final

from aiohttp import web

from autovision.auth.kubernetes import KubeApi, KubeClient, TokenChecker
from autovision.console.app import CSRF_COOKIE, ConsoleConfig, build_console_app
from autovision.console.artifacts import ArtifactReader
from autovision.console.cluster_source import ClusterSource
from autovision.console.kubernetes_guard import TOKEN_COOKIE, KubernetesGuard
from autovision.storage import Storage

DEFAULT_PORT: Final = 8750
LOGIN_PATH: Final = "/login"
LOGOUT_PATH: Final = "/logout"
LOGIN_SCRIPT_PATH: Final = "/login.js"
# Nothing is uploaded in a cluster (imports read a URI): the limit only bounds what a form may send.
MAX_FORM_BYTES: Final = 1024 * 1024
_LOGIN_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>AutoVision console: log in</title>
<script type="module" src="{script}"></script></head>
<body><main><h1>AutoVision console</h1>
<p>Namespace <code>{namespace}</code>. Paste a Kubernetes token: you see and do what RBAC allows it.
<code>kubectl create token SERVICE-ACCOUNT</code> prints one, or use your OIDC ID token.</p>
<form id="login" method="post" action="{action}">
<label>Token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Log in</button></form>
<p id="message" role="alert"></p></main></body></html>
"""
# The console's CSRF check wants the double-submit token in a header: the form is sent by fetch.
_LOGIN_SCRIPT: Final = f"""const form = document.getElementById("login");
const message = document.getElementById("message");
form.addEventListener("submit", async (event) => {{
  event.preventDefault();
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("{CSRF_COOKIE}="));
  const csrf = cookie ? cookie.slice("{CSRF_COOKIE}=".length) : "";
  const reply = await fetch("{LOGIN_PATH}", {{
    method: "POST", headers: {{"X-CSRF-Token": csrf}}, body: new FormData(form), credentials: "same-origin",
  }});
  if (reply.ok) {{
    window.location.assign("/");
  }} else {{
    message.textContent = await reply.text();
  }}
}});
"""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def login_routes(guard: KubernetesGuard, namespace: str) -> list[web.RouteDef]:
    """The login page (a token kept in an HttpOnly cookie), its script, and logout."""
    page = _LOGIN_PAGE.format(script=LOGIN_SCRIPT_PATH, namespace=html.escape(namespace), action=LOGIN_PATH)

    async def show(request: web.Request) -> web.Response:
        response = web.Response(text=page, content_type="text/html")
        if not request.cookies.get(CSRF_COOKIE):
            response.set_cookie(
                CSRF_COOKIE, secrets.token_urlsafe(32), path="/", samesite="Strict", secure=request.secure
            )
        return response

    async def script(request: web.Request) -> web.Response:
        return web.Response(text=_LOGIN_SCRIPT, content_type="text/javascript")

    async def log_in(request: web.Request) -> web.Response:
        token = str((await request.post()).get("token", "")).strip()
        await guard.login(token)
        response = web.Response(status=204)
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.secure, path="/")
        return response

    async def log_out(request: web.Request) -> web.Response:
        response = web.Response(status=204)
        response.del_cookie(TOKEN_COOKIE, path="/")
        return response

    return [
        web.get(LOGIN_PATH, show),
        web.get(LOGIN_SCRIPT_PATH, script),
        web.post(LOGIN_PATH, log_in),
        web.post(LOGOUT_PATH, log_out),
    ]


@web.middleware
async def login_first(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Send a browser without a token from the page to the login form."""
    if request.path == "/" and not request.headers.get("Authorization") and not request.cookies.get(TOKEN_COOKIE):
        raise web.HTTPSeeOther(LOGIN_PATH)
    return await handler(request)


def build_cluster_console_app(
    namespace: str, *, api: KubeApi | None = None, storage: Storage | None = None
) -> web.Application:
    """The console over one namespace of the cluster it runs in, as its pod's service account."""
    client = KubeClient(api or KubeApi.in_cluster())
    guard = KubernetesGuard(TokenChecker(client), namespace)
    source = ClusterSource(client, ArtifactReader(storage or Storage.from_settings()), namespace)
    config = replace(ConsoleConfig(), max_upload_bytes=MAX_FORM_BYTES)
    app = build_console_app(source, guard=guard, config=config)
    app.middlewares.append(login_first)
    app.router.add_routes(login_routes(guard, namespace))

    async def close(_: web.Application) -> None:
        await source.close()
        await client.close()

    app.on_cleanup.append(close)
    return app


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The container's arguments, as the chart passes them."""
    parser = argparse.ArgumentParser(prog="python -m autovision.console.cluster_app", description=main.__doc__)
    parser.add_argument("--namespace", required=True, help="The namespace whose resources the console shows.")
    parser.add_argument("--host", default="0.0.0.0", help="Address to listen on (the pod's).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="Port to listen on.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the cluster console (the chart's container command)."""
    args = parse_arguments(argv)
    web.run_app(build_cluster_console_app(args.namespace), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
