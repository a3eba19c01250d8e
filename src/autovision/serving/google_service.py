"""Google's AutoML v1 and Vertex AI predict operations over the gateway's models, whatever the transport.

The REST routes (``google_rest``) and the gRPC service (``google_grpc``) both hand
these the request as Google's JSON (a gRPC message turned into the same JSON) and
send back the JSON answer with the run that answered, so both transports answer exactly alike. The caller holds
an admission slot; a refusal is a GatewayError, which ``google_api`` names in Google's terms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from autovision.serving import google_api
from autovision.serving.gateway import GatewayConfig, GatewayError
from autovision.serving.router import Router

# The run whose model answered, and the answer's JSON.
Routed = tuple[str, dict[str, Any]]
# One of the operations below: (router, config, resource name, Google's JSON body, sticky value) -> Routed.
Operation = Callable[[Router, GatewayConfig, str, Any, str | None], Awaitable[Routed]]


async def automl_predict(router: Router, config: GatewayConfig, name: str, body: Any, sticky: str | None) -> Routed:
    """AutoML v1 ``models/{model}:predict`` on the served model named by ``name``."""
    google_api.check_served(google_api.parse_resource_name(name, "models"), config.public_name)
    image, threshold = google_api.parse_automl_request(body, config.max_image_bytes, config.default_threshold)
    run, scored = await router.classify([image], sticky)
    return run, google_api.build_automl_response(scored[0], threshold)


async def vertex_predict(router: Router, config: GatewayConfig, endpoint: str, body: Any, sticky: str | None) -> Routed:
    """Vertex AI ``endpoints/{endpoint}:predict``: every instance at once, to one model (Triton batches them)."""
    google_api.check_served(google_api.parse_resource_name(endpoint, "endpoints"), config.public_name)
    request = google_api.parse_vertex_request(body, config.max_image_bytes)
    run, scored = await router.classify(request.images, sticky)
    predictions = [google_api.build_vertex_prediction(each, request) for each in scored]
    return run, google_api.build_vertex_response(predictions, config.public_name)


async def vertex_explain(router: Router, config: GatewayConfig, endpoint: str, body: Any, sticky: str | None) -> Routed:
    """Vertex AI ``endpoints/{endpoint}:explain``: the predictions of ``:predict`` and, per instance, the
    explainer's heatmap of the top label (or ``parameters.label``); 404 without an explainer."""
    from autovision.serving.explain_route import NOT_ENABLED, explained

    google_api.check_served(google_api.parse_resource_name(endpoint, "endpoints"), config.public_name)
    if config.explainer_url is None:
        raise GatewayError(404, NOT_ENABLED)
    request, settings = google_api.parse_vertex_explain_request(body, config.max_image_bytes)
    run, scored = await router.classify(request.images, sticky)
    predictions = [google_api.build_vertex_prediction(each, request) for each in scored]
    explanations = [
        google_api.build_vertex_explanation(await explained(config, google_api.explainer_body(image, settings)))
        for image in request.images
    ]
    return run, google_api.build_vertex_explain_response(predictions, explanations, config.public_name)


def get_endpoint(config: GatewayConfig, name: str) -> dict[str, Any]:
    """Vertex AI's Endpoint resource of the served model (the ModelDeployment)."""
    parts = name.split("/")
    google_api.check_served(google_api.parse_resource_name(name, "endpoints"), config.public_name)
    return google_api.build_endpoint(parts[1], parts[3], parts[5], config.public_name)
