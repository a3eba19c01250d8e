"""Google's AutoML v1 and Vertex AI REST paths on the gateway's aiohttp application.

``POST /v1/projects/P/locations/L/models/M:predict`` (AutoML v1),
``POST /v1/projects/P/locations/L/endpoints/E:predict``, ``...:explain`` (with an
explainer) and ``GET .../endpoints/E`` (Vertex AI): the paths Google's clients send
with ``transport="rest"``. Each refusal is answered in Google's error shape, so the clients raise their own exceptions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from autovision.serving import google_api, google_service
from autovision.serving.gateway import ADMISSION, ROUTER, GatewayConfig, GatewayError, read_json_body
from autovision.serving.traffic import MODEL_HEADER

_NAME = "projects/{project:[^/]+}/locations/{location:[^/]+}"
AUTOML_PREDICT = f"/v1/{_NAME}/models/{{resource:[^/:]+}}:predict"
VERTEX_PREDICT = f"/v1/{_NAME}/endpoints/{{resource:[^/:]+}}:predict"
VERTEX_EXPLAIN = f"/v1/{_NAME}/endpoints/{{resource:[^/:]+}}:explain"
VERTEX_ENDPOINT = f"/v1/{_NAME}/endpoints/{{resource:[^/:]+}}"


def _name(request: web.Request, collection: str) -> str:
    info = request.match_info
    return google_api.resource_name(info["project"], info["location"], collection, info["resource"])


def google_error(error: GatewayError) -> web.Response:
    """A refusal in Google's error shape, with Retry-After when the gateway has one."""
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    body = google_api.error_body(error)
    return web.json_response(body, status=body["error"]["code"], headers=headers)


def add_routes(app: web.Application, config: GatewayConfig) -> None:
    """Serve Google's predict paths (and Vertex's endpoint read) for the models in ``config``.

    A predict answer names the run that answered in the ``X-AutoVision-Model`` header.
    """

    def predict(
        operation: google_service.Operation, collection: str
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                async with request.app[ADMISSION].slot():
                    body = await read_json_body(request, config.max_image_bytes, config.body_timeout_s)
                    router = request.app[ROUTER]
                    sticky = router.sticky_value(request.headers)
                    run, answer = await operation(router, config, _name(request, collection), body, sticky)
            except GatewayError as error:
                return google_error(error)
            return web.json_response(answer, headers={MODEL_HEADER: run})

        return handle

    async def endpoint(request: web.Request) -> web.Response:
        try:
            return web.json_response(google_service.get_endpoint(config, _name(request, "endpoints")))
        except GatewayError as error:
            return google_error(error)

    app.router.add_post(AUTOML_PREDICT, predict(google_service.automl_predict, "models"))
    app.router.add_post(VERTEX_PREDICT, predict(google_service.vertex_predict, "endpoints"))
    app.router.add_post(VERTEX_EXPLAIN, predict(google_service.vertex_explain, "endpoints"))
    app.router.add_get(VERTEX_ENDPOINT, endpoint)
