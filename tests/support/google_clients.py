"""Google's official AutoML v1 and Vertex AI clients pointed at a local gateway, over REST or gRPC.

Only the endpoint (or the gRPC channel) differs from talking to Google; the refusal
cases list what each transport's client raises for the same bad request.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import aiplatform_v1, automl_v1
from google.cloud.aiplatform_v1.services.prediction_service.transports.grpc import (
    PredictionServiceGrpcTransport as VertexGrpcTransport,
)
from google.cloud.automl_v1.services.prediction_service.transports import (
    PredictionServiceGrpcTransport as AutoMLGrpcTransport,
)

from autovision.serving import Prediction, predict
from tests.support.served import GOOGLE_MAX_IMAGE_BYTES, Endpoints
from tests.support.serving import LABELS, encode_image

MODEL = "projects/my-project/locations/us-central1/models/autovision"
ENDPOINT = "projects/my-project/locations/us-central1/endpoints/autovision"
IMAGE = encode_image("JPEG", seed=5)


def anonymous() -> Credentials:
    """No credentials at all: the local gateway asks for none."""
    credentials: Credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return credentials


@dataclass(frozen=True)
class Clients:
    """One AutoML v1 and one Vertex AI prediction client on the same transport."""

    automl: automl_v1.PredictionServiceClient
    vertex: aiplatform_v1.PredictionServiceClient


def rest_clients(url: str) -> Clients:
    """Both clients over REST at ``url`` (http://host:port): the one line a user changes."""
    options = {"api_endpoint": url}
    return Clients(
        automl_v1.PredictionServiceClient(credentials=anonymous(), transport="rest", client_options=options),
        aiplatform_v1.PredictionServiceClient(credentials=anonymous(), transport="rest", client_options=options),
    )


def grpc_clients(target: str) -> Clients:
    """Both clients over gRPC on an insecure channel to ``target`` (host:port)."""
    return Clients(
        automl_v1.PredictionServiceClient(transport=AutoMLGrpcTransport(channel=grpc.insecure_channel(target))),
        aiplatform_v1.PredictionServiceClient(transport=VertexGrpcTransport(channel=grpc.insecure_channel(target))),
    )


def automl_predict(
    clients: Clients, image: bytes = IMAGE, model: str = MODEL, **params: str
) -> automl_v1.PredictResponse:
    """AutoML v1 predict of one image."""
    payload = automl_v1.ExamplePayload(image=automl_v1.Image(image_bytes=image))
    return clients.automl.predict(name=model, payload=payload, params=params)


def content(image: bytes) -> dict[str, Any]:
    """A Vertex image classification instance."""
    return {"content": base64.b64encode(image).decode()}


def vertex_predict(
    clients: Clients, images: list[bytes], endpoint: str = ENDPOINT, **parameters: Any
) -> aiplatform_v1.PredictResponse:
    """Vertex AI predict of each image."""
    instances: Any = [content(image) for image in images]
    return clients.vertex.predict(endpoint=endpoint, instances=instances, parameters=parameters or None)


@dataclass(frozen=True)
class Refusal:
    """A bad request, the exception each transport's client raises for it, and words of its message."""

    id: str
    call: Callable[[Clients], object]
    rest: type[Exception]
    grpc: type[Exception]
    message: str


REFUSALS = [
    Refusal(
        "automl-unknown-model",
        lambda c: automl_predict(c, model=MODEL.replace("autovision", "tulips")),
        exceptions.NotFound,
        exceptions.NotFound,
        "'tulips' is not served here",
    ),
    Refusal(
        "automl-unknown-param",
        lambda c: automl_predict(c, max_bounding_box_count="1"),
        exceptions.BadRequest,
        exceptions.InvalidArgument,
        "params.max_bounding_box_count is not supported",
    ),
    Refusal(
        "automl-not-an-image",
        lambda c: automl_predict(c, b"not an image"),
        exceptions.BadRequest,
        exceptions.InvalidArgument,
        "decodable",
    ),
    Refusal(
        "vertex-max-predictions-0",
        lambda c: vertex_predict(c, [IMAGE], maxPredictions=0),
        exceptions.BadRequest,
        exceptions.InvalidArgument,
        "maxPredictions must be at least 1",
    ),
    Refusal(
        "vertex-33-instances",
        lambda c: vertex_predict(c, [b"x"] * 33),
        exceptions.BadRequest,
        exceptions.InvalidArgument,
        "33 instances exceed",
    ),
    Refusal(
        "vertex-image-too-large",
        lambda c: vertex_predict(c, [b"\xff" * (GOOGLE_MAX_IMAGE_BYTES + 1)]),
        exceptions.BadRequest,
        exceptions.InvalidArgument,
        "byte limit",
    ),
    Refusal(
        "vertex-unknown-endpoint",
        lambda c: vertex_predict(c, [IMAGE], endpoint=ENDPOINT.replace("autovision", "tulips")),
        exceptions.NotFound,
        exceptions.NotFound,
        "'tulips' is not served here",
    ),
]


def triton_answer(endpoints: Endpoints, image: bytes) -> list[Prediction]:
    """What tritonclient gets from Triton itself, every label best first: what the clients must match."""
    return predict(image, endpoints.kserve_http, top_k=len(LABELS))
