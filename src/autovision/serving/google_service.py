"""Google's AutoML v1 and Vertex AI predict operations over the gateway's Triton, whatever the transport.

The REST routes (``google_rest``) and the gRPC service (``google_grpc``) both hand
these the request as Google's JSON (a gRPC message turned into the same JSON) and
send back the JSON answer, so both transports answer exactly alike. The caller holds
an admission slot; a refusal is a GatewayError, which ``google_api`` names in Google's terms.
"""

from __future__ import annotations

import asyncio
from typing import Any

from autovision.serving import google_api
from autovision.serving.gateway import GatewayConfig, _Upstream, classify_image


async def automl_predict(upstream: _Upstream, config: GatewayConfig, name: str, body: Any) -> dict[str, Any]:
    """AutoML v1 ``models/{model}:predict`` on the served model named by ``name``."""
    google_api.check_served(google_api.parse_resource_name(name, "models"), config.public_name)
    image, threshold = google_api.parse_automl_request(body, config.max_image_bytes, config.default_threshold)
    return google_api.build_automl_response(await classify_image(upstream, image), threshold)


async def vertex_predict(upstream: _Upstream, config: GatewayConfig, endpoint: str, body: Any) -> dict[str, Any]:
    """Vertex AI ``endpoints/{endpoint}:predict``: every instance at once (Triton batches them), answers in order."""
    google_api.check_served(google_api.parse_resource_name(endpoint, "endpoints"), config.public_name)
    request = google_api.parse_vertex_request(body, config.max_image_bytes)
    scored = await asyncio.gather(*(classify_image(upstream, image) for image in request.images))
    predictions = [google_api.build_vertex_prediction(each, request) for each in scored]
    return google_api.build_vertex_response(predictions, config.public_name)


def get_endpoint(config: GatewayConfig, name: str) -> dict[str, Any]:
    """Vertex AI's Endpoint resource of the served model (the ModelDeployment)."""
    parts = name.split("/")
    google_api.check_served(google_api.parse_resource_name(name, "endpoints"), config.public_name)
    return google_api.build_endpoint(parts[1], parts[3], parts[5], config.public_name)
