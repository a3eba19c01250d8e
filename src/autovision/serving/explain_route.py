"""The gateway's ``POST /v1/models/{name}:explain``: forwarded to the explainer, or 404 when there is none.

The explainer (``autovision.serving.explainer``) needs torch and a CPU or two, so
it runs apart from the gateway, which only relays the request within its own
limits (admission, body size and timeout) and the explainer's answer as is.
Without an explainer URL (``ModelDeployment.spec.explain`` unset, or
``autovision serve`` without ``--explain``) the path answers 404 with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from autovision.serving.gateway import ADMISSION, UNREACHABLE, GatewayError, error_response, read_json_body

if TYPE_CHECKING:
    from autovision.serving.gateway import GatewayConfig

EXPLAIN_ROUTE = "/v1/models/{name:[^/:]+}:explain"
NOT_ENABLED = (
    "explanations are not enabled for this model: set spec.explain on its ModelDeployment "
    "(locally: autovision serve --explain)"
)
# Seconds the explainer may take beyond the gateway's upstream timeout: its own time limit answers first.
EXPLAINER_GRACE_S = 5.0


async def ask_explainer(config: GatewayConfig, body: Any) -> tuple[int, Any]:
    """The explainer's status and JSON answer to an AutoML :explain ``body``; GatewayError 404 without an
    explainer, 503 when it is unreachable or too slow."""
    if config.explainer_url is None:
        raise GatewayError(404, NOT_ENABLED)
    timeout = aiohttp.ClientTimeout(total=config.upstream_timeout_s + EXPLAINER_GRACE_S)
    url = f"{config.explainer_url.rstrip('/')}/v1/models/{config.public_name}:explain"
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, json=body) as response:
            return response.status, await response.json()
    except (*UNREACHABLE, ValueError) as error:
        message = f"the explainer is unreachable or did not answer in time ({type(error).__name__})"
        raise GatewayError(503, message, retry_after_s=5) from error


async def explained(config: GatewayConfig, body: Any) -> dict[str, Any]:
    """The explainer's answer to ``body``; its refusal (a 400, a 504) as a GatewayError with its reason."""
    status, answer = await ask_explainer(config, body)
    if status != 200:
        error = answer.get("error") if isinstance(answer, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise GatewayError(status, str(message or f"the explainer answered {status}"))
    result: dict[str, Any] = answer
    return result


def add_explain_route(app: web.Application, config: GatewayConfig) -> None:
    """Serve :explain for the model in ``config`` by forwarding to ``config.explainer_url``."""

    async def explain(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            if config.explainer_url is None:
                raise GatewayError(404, NOT_ENABLED)
            if name != config.public_name:
                raise GatewayError(404, f"model {name!r} is not served here; this serves {config.public_name!r}")
            async with request.app[ADMISSION].slot():
                status, answer = await ask_explainer(
                    config, await read_json_body(request, config.max_image_bytes, config.body_timeout_s)
                )
        except GatewayError as error:
            return error_response(error)
        return web.json_response(answer, status=status)

    app.router.add_post(EXPLAIN_ROUTE, explain)
