"""Google's AutoML v1 and Vertex AI PredictionService (and Vertex's GetEndpoint) over gRPC.

Both clients default to gRPC. This serves ``google.cloud.automl.v1.PredictionService/Predict``,
``google.cloud.aiplatform.v1.PredictionService/Predict`` and ``/Explain`` (with an explainer), and
``google.cloud.aiplatform.v1.EndpointService/GetEndpoint`` with the message classes the
client packages ship (no copied protos): a request becomes the JSON its REST twin posts,
``google_service`` answers it, and the JSON becomes the response message. Refusals are
the gRPC status codes Google uses, so the clients raise InvalidArgument, NotFound and so on.
Runs in the gateway's event loop, sharing its admission bounds and Triton client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from google.cloud import aiplatform_v1, automl_v1
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

from autovision.serving import google_api, google_service
from autovision.serving.gateway import (
    ADMISSION,
    GATEKEEPER,
    ROUTER,
    GatewayConfig,
    GatewayError,
    max_request_bytes,
)
from autovision.serving.traffic import MODEL_HEADER

AUTOML_SERVICE = "google.cloud.automl.v1.PredictionService"
VERTEX_SERVICE = "google.cloud.aiplatform.v1.PredictionService"
VERTEX_ENDPOINT_SERVICE = "google.cloud.aiplatform.v1.EndpointService"
# Seconds in-flight calls get to finish when the gateway stops.
STOP_GRACE_S = 5.0

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]


def _serialize(message: Message) -> bytes:
    # The concrete class's method: Message.SerializeToString itself is abstract.
    data: bytes = message.SerializeToString()
    return data


def _method(handler: Handler, request: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=request.FromString, response_serializer=_serialize
    )


def authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The call's ``authorization`` metadata (what a client's bearer credentials send), if any."""
    return metadata(context).get("authorization")


def metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The call's metadata as text, by lower-case key (gRPC's own spelling of header names)."""
    items = context.invocation_metadata() or ()
    return {key.lower(): value if isinstance(value, str) else value.decode() for key, value in items}


def handlers(app: web.Application, config: GatewayConfig) -> list[grpc.GenericRpcHandler]:
    """The three services' handlers, answering from the gateway application's router.

    A predict answer names the run that answered in its trailing metadata,
    ``x-autovision-model`` (the REST header's name in gRPC's lower case).
    """
    get_endpoint_request, endpoint = aiplatform_v1.GetEndpointRequest.pb(), aiplatform_v1.Endpoint.pb()

    async def answer(context: grpc.aio.ServicerContext[Any, Any], response: type[Message], work: Any) -> Message:
        try:
            gatekeeper = app[GATEKEEPER]
            if gatekeeper is not None:
                await gatekeeper.check(authorization(context))
            run, result = await work()
        except GatewayError as error:
            await context.abort(google_api.google_status(error).grpc_code, error.message)
        if run is not None:
            context.set_trailing_metadata(((MODEL_HEADER.lower(), run),))
        return json_format.ParseDict(result, response())

    def routed(operation: google_service.Operation, request_type: Any, response_type: Any, name_field: str) -> Any:
        """A unary method answering ``request_type`` from ``operation`` on the resource in ``name_field``."""

        async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
            async def work() -> google_service.Routed:
                async with app[ADMISSION].slot():
                    body = json_format.MessageToDict(request)
                    sticky = app[ROUTER].sticky_value(metadata(context))
                    name = getattr(request, name_field)
                    return await operation(app[ROUTER], config, name, body, sticky)

            return await answer(context, response_type.pb(), work)

        return _method(handle, request_type.pb())

    async def get_endpoint(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        async def work() -> tuple[None, dict[str, Any]]:
            return None, google_service.get_endpoint(config, request.name)

        return await answer(context, endpoint, work)

    automl = {
        "Predict": routed(google_service.automl_predict, automl_v1.PredictRequest, automl_v1.PredictResponse, "name")
    }
    vertex = {
        "Predict": routed(
            google_service.vertex_predict, aiplatform_v1.PredictRequest, aiplatform_v1.PredictResponse, "endpoint"
        ),
        "Explain": routed(
            google_service.vertex_explain, aiplatform_v1.ExplainRequest, aiplatform_v1.ExplainResponse, "endpoint"
        ),
    }
    return [
        grpc.method_handlers_generic_handler(AUTOML_SERVICE, automl),
        grpc.method_handlers_generic_handler(VERTEX_SERVICE, vertex),
        grpc.method_handlers_generic_handler(
            VERTEX_ENDPOINT_SERVICE, {"GetEndpoint": _method(get_endpoint, get_endpoint_request)}
        ),
    ]


def serving(address: str, config: GatewayConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for the gateway application: the gRPC server on ``address`` while the app runs."""

    async def serve(app: web.Application) -> AsyncIterator[None]:
        # Messages up to the REST body limit; a larger one is refused by gRPC itself (RESOURCE_EXHAUSTED), and
        # so is a call beyond the admitted and waiting ones, before its message is parsed and held.
        limit = max_request_bytes(config.max_image_bytes)
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", limit)],
            maximum_concurrent_rpcs=config.max_concurrency + config.max_queue,
        )
        server.add_generic_rpc_handlers(handlers(app, config))
        if server.add_insecure_port(address) == 0:
            raise OSError(f"cannot listen for gRPC on {address}")
        await server.start()
        yield
        await server.stop(STOP_GRACE_S)

    return serve
