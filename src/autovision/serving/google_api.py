"""Google's AutoML v1 and Vertex AI predict dialects, mapped to and from AutoVision's predictions.

Google's official clients (``google-cloud-automl``, ``google-cloud-aiplatform``) talk to
resource paths such as ``projects/P/locations/L/models/M`` and expect Google's JSON shapes
and error shape back. These pure functions parse such requests (as the JSON a REST client
posts, or the same JSON made from a gRPC message), build the answers, and say which
error status each refusal has, so the REST routes and the gRPC service share one mapping.
Project and location are accepted and ignored: a gateway serves one model.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from autovision.serving.client import Prediction
from autovision.serving.gateway import GatewayError, parse_predict_request

# Vertex AI's image classification parameters (schema/predict/params/image_classification.proto).
VERTEX_DEFAULT_CONFIDENCE_THRESHOLD = 0.0
VERTEX_DEFAULT_MAX_PREDICTIONS = 10
# Instances in one Vertex request: Triton's batch (the cluster repository's max batch size).
MAX_INSTANCES = 32
AUTOML_PARAMS = frozenset({"score_threshold"})
VERTEX_PARAMETERS = frozenset({"confidenceThreshold", "maxPredictions"})
# What Vertex's :explain also takes in ``parameters``: the explainer's own settings (serving.explainer).
EXPLANATION_PARAMETERS = frozenset({"label", "method", "steps", "grid"})
# mimeType is accepted and ignored: the server reads the image's own header.
INSTANCE_FIELDS = frozenset({"content", "mimeType"})


@dataclass(frozen=True)
class GoogleStatus:
    """One of google.rpc.Code: its name, the HTTP status Google answers with it, and the gRPC code."""

    name: str
    http: int
    grpc_code: grpc.StatusCode


INVALID_ARGUMENT = GoogleStatus("INVALID_ARGUMENT", 400, grpc.StatusCode.INVALID_ARGUMENT)
NOT_FOUND = GoogleStatus("NOT_FOUND", 404, grpc.StatusCode.NOT_FOUND)
DEADLINE_EXCEEDED = GoogleStatus("DEADLINE_EXCEEDED", 504, grpc.StatusCode.DEADLINE_EXCEEDED)
UNAVAILABLE = GoogleStatus("UNAVAILABLE", 503, grpc.StatusCode.UNAVAILABLE)
INTERNAL = GoogleStatus("INTERNAL", 500, grpc.StatusCode.INTERNAL)
UNAUTHENTICATED = GoogleStatus("UNAUTHENTICATED", 401, grpc.StatusCode.UNAUTHENTICATED)
PERMISSION_DENIED = GoogleStatus("PERMISSION_DENIED", 403, grpc.StatusCode.PERMISSION_DENIED)

# The gateway's HTTP statuses as Google names them. A too large image or body is an
# invalid argument to Google (it has no 413); a body not received in time a deadline.
_BY_GATEWAY_STATUS = {
    400: INVALID_ARGUMENT,
    413: INVALID_ARGUMENT,
    401: UNAUTHENTICATED,
    403: PERMISSION_DENIED,
    404: NOT_FOUND,
    408: DEADLINE_EXCEEDED,
    503: UNAVAILABLE,
}


def google_status(error: GatewayError) -> GoogleStatus:
    """The Google status of a gateway refusal, so the clients raise their own exception class for it."""
    return _BY_GATEWAY_STATUS.get(error.status, INVALID_ARGUMENT if error.status < 500 else INTERNAL)


def error_body(error: GatewayError) -> dict[str, Any]:
    """Google's REST error shape (google.rpc.Status as JSON), which the clients' REST transports read."""
    status = google_status(error)
    return {"error": {"code": status.http, "message": error.message, "status": status.name}}


def _refuse_unknown(where: str, given: dict[str, Any], supported: frozenset[str]) -> None:
    unknown = sorted(set(given) - supported)
    if unknown:
        raise GatewayError(400, f"{where}.{unknown[0]} is not supported; supported: {', '.join(sorted(supported))}")


# --- resource names ----------------------------------------------------------


def resource_name(project: str, location: str, collection: str, resource: str) -> str:
    """``projects/P/locations/L/COLLECTION/ID``, the name Google's APIs give a model or an endpoint."""
    return f"projects/{project}/locations/{location}/{collection}/{resource}"


def parse_resource_name(name: str, collection: str) -> str:
    """The ID in ``projects/*/locations/*/COLLECTION/ID`` (project and location ignored); GatewayError 400 else."""
    parts = name.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != collection or not all(parts):
        raise GatewayError(400, f"expected a name projects/PROJECT/locations/LOCATION/{collection}/ID, got {name!r}")
    return parts[5]


def check_served(resource: str, served: str) -> None:
    """GatewayError 404 unless ``resource`` names the served model (the ModelDeployment, or the local one)."""
    if resource != served:
        raise GatewayError(404, f"{resource!r} is not served here; this serves {served!r}")


# --- AutoML v1 ---------------------------------------------------------------


def parse_automl_request(body: Any, max_image_bytes: int, default_threshold: float) -> tuple[bytes, float]:
    """The image and score threshold of an AutoML v1 PredictRequest; any param but score_threshold is refused."""
    params = body.get("params") if isinstance(body, dict) else None
    if params is not None and not isinstance(params, dict):
        raise GatewayError(400, "params must be a map of strings")
    _refuse_unknown("params", params or {}, AUTOML_PARAMS)
    parsed = parse_predict_request(body, max_image_bytes, default_threshold)
    return parsed.image, parsed.score_threshold


def build_automl_response(predictions: Sequence[Prediction], score_threshold: float) -> dict[str, Any]:
    """AutoML v1's PredictResponse: an AnnotationPayload per label at or above the threshold, best first."""
    kept = sorted((p for p in predictions if p.score >= score_threshold), key=lambda p: -p.score)
    return {
        "payload": [
            {"annotationSpecId": str(p.index), "displayName": p.label, "classification": {"score": p.score}}
            for p in kept
        ]
    }


# --- Vertex AI ---------------------------------------------------------------


@dataclass(frozen=True)
class VertexRequest:
    """A Vertex AI predict request, decoded: one image per instance, and the parameters."""

    images: list[bytes]
    confidence_threshold: float
    max_predictions: int


def parse_vertex_request(body: Any, max_image_bytes: int) -> VertexRequest:
    """Validate a Vertex PredictRequest for image classification; GatewayError 400 (or 413) when it is not one."""
    instances = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(instances, list) or not instances:
        raise GatewayError(400, 'expected {"instances": [{"content": "<base64>"}, ...]}')
    if len(instances) > MAX_INSTANCES:
        raise GatewayError(400, f"{len(instances)} instances exceed the limit of {MAX_INSTANCES} per request")
    images = [_instance_image(i, instance, max_image_bytes) for i, instance in enumerate(instances)]
    threshold, max_predictions = _vertex_parameters(body.get("parameters"))
    return VertexRequest(images, threshold, max_predictions)


def _instance_image(index: int, instance: Any, max_image_bytes: int) -> bytes:
    content = instance.get("content") if isinstance(instance, dict) else None
    if not isinstance(content, str) or not content:
        raise GatewayError(400, f'instances[{index}] must be {{"content": "<base64>"}}')
    _refuse_unknown(f"instances[{index}]", instance, INSTANCE_FIELDS)
    try:
        # Protobuf's JSON accepts either base64 alphabet; so does Vertex.
        data = base64.b64decode(content.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as error:
        raise GatewayError(400, f"instances[{index}].content is not valid base64: {error}") from error
    if len(data) > max_image_bytes:
        message = f"instances[{index}]: image of {len(data)} bytes exceeds the {max_image_bytes}-byte limit"
        raise GatewayError(413, message)
    return data


def _vertex_parameters(parameters: Any) -> tuple[float, int]:
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise GatewayError(400, "parameters must be an object")
    _refuse_unknown("parameters", parameters, VERTEX_PARAMETERS)
    threshold = parameters.get("confidenceThreshold", VERTEX_DEFAULT_CONFIDENCE_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 <= threshold <= 1.0:
        raise GatewayError(400, f"parameters.confidenceThreshold must be a number in [0, 1], got {threshold!r}")
    limit = parameters.get("maxPredictions", VERTEX_DEFAULT_MAX_PREDICTIONS)
    # Protobuf's Value holds every number as a double: 5 arrives as 5.0 over gRPC.
    if isinstance(limit, bool) or not isinstance(limit, int | float) or not math.isfinite(limit) or limit != int(limit):
        raise GatewayError(400, f"parameters.maxPredictions must be an integer, got {limit!r}")
    if limit < 1:
        raise GatewayError(400, f"parameters.maxPredictions must be at least 1, got {int(limit)}")
    return float(threshold), int(limit)


def build_vertex_prediction(predictions: Sequence[Prediction], request: VertexRequest) -> dict[str, Any]:
    """One instance's prediction in Vertex's image classification schema: ids, displayNames, confidences."""
    kept = sorted((p for p in predictions if p.score >= request.confidence_threshold), key=lambda p: -p.score)
    kept = kept[: request.max_predictions]
    return {
        "ids": [str(p.index) for p in kept],
        "displayNames": [p.label for p in kept],
        "confidences": [p.score for p in kept],
    }


def build_vertex_response(predictions: list[dict[str, Any]], deployed_model_id: str) -> dict[str, Any]:
    """Vertex's PredictResponse: one prediction per instance, in order, and the deployed model that answered."""
    return {"predictions": predictions, "deployedModelId": deployed_model_id}


def build_endpoint(project: str, location: str, endpoint: str, deployed_model_id: str) -> dict[str, Any]:
    """The Endpoint resource (what ``aiplatform.Endpoint(name)`` reads first): one deployed model, all traffic."""
    return {
        "name": resource_name(project, location, "endpoints", endpoint),
        "displayName": endpoint,
        "deployedModels": [
            {
                "id": deployed_model_id,
                "model": resource_name(project, location, "models", deployed_model_id),
                "displayName": deployed_model_id,
            }
        ],
        "trafficSplit": {deployed_model_id: 100},
    }


def parse_vertex_explain_request(body: Any, max_image_bytes: int) -> tuple[VertexRequest, dict[str, Any]]:
    """A Vertex ExplainRequest: its predict request, and the explanation settings found in ``parameters``."""
    parameters = body.get("parameters") if isinstance(body, dict) else None
    if not isinstance(parameters, dict):
        return parse_vertex_request(body, max_image_bytes), {}
    predicting = {key: value for key, value in parameters.items() if key not in EXPLANATION_PARAMETERS}
    explaining = {key: value for key, value in parameters.items() if key in EXPLANATION_PARAMETERS}
    return parse_vertex_request({**body, "parameters": predicting}, max_image_bytes), explaining


def explainer_body(image: bytes, settings: dict[str, Any]) -> dict[str, Any]:
    """The AutoML :explain body the explainer takes for one instance's image."""
    return {"payload": {"image": {"imageBytes": base64.b64encode(image).decode("ascii")}}, "params": settings}


def build_vertex_explanation(explained: dict[str, Any]) -> dict[str, Any]:
    """Vertex's Explanation of one instance from the explainer's answer: one attribution, of the explained
    label, whose ``featureAttributions`` hold the heatmap (overlay PNG and grid) and the method's settings."""
    explanation = explained["explanation"]
    features = {key: value for key, value in explanation.items() if key not in {"displayName", "score"}}
    attribution = {
        "outputDisplayName": explanation["displayName"],
        "instanceOutputValue": explanation["score"],
        "featureAttributions": features,
    }
    return {"attributions": [attribution]}


def build_vertex_explain_response(
    predictions: list[dict[str, Any]], explanations: list[dict[str, Any]], deployed_model_id: str
) -> dict[str, Any]:
    """Vertex's ExplainResponse: per instance, in order, a prediction and an explanation."""
    return {**build_vertex_response(predictions, deployed_model_id), "explanations": explanations}
