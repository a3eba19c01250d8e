"""Google's AutoML v1 and Vertex AI predict, alike over REST and gRPC, against ``autovision serve``.

Google's own clients (anonymous credentials; REST with only the endpoint changed,
gRPC on an insecure channel) get the labels and scores tritonclient gets from
Triton, and their own exception class for each refusal: over REST the class of
the HTTP status (BadRequest for INVALID_ARGUMENT), over gRPC the status's.
"""

from __future__ import annotations

import pytest

from tests.support.google_clients import (
    IMAGE,
    REFUSALS,
    Clients,
    Refusal,
    automl_predict,
    grpc_clients,
    rest_clients,
    triton_answer,
    vertex_predict,
)
from tests.support.served import Endpoints, Run, prediction_log_counts
from tests.support.serving import encode_image, needs_tritonserver

TRANSPORTS = ("rest", "grpc")


def clients_over(transport: str, endpoints: Endpoints) -> Clients:
    """Both clients over one transport, pointed at the served gateway."""
    return rest_clients(endpoints.gateway) if transport == "rest" else grpc_clients(endpoints.google_grpc)


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_automl_client_gets_tritons_labels_and_scores(google_served: tuple[Run, Endpoints], transport: str) -> None:
    endpoints = google_served[1]
    expected = triton_answer(endpoints, IMAGE)
    response = automl_predict(clients_over(transport, endpoints), score_threshold="0")
    assert [a.display_name for a in response.payload] == [p.label for p in expected]
    assert [a.classification.score for a in response.payload] == pytest.approx([p.score for p in expected], abs=1e-6)
    assert [a.annotation_spec_id for a in response.payload] == [str(p.index) for p in expected]
    best = automl_predict(clients_over(transport, endpoints), score_threshold=str(expected[0].score))
    assert [a.display_name for a in best.payload] == [expected[0].label]


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_vertex_client_gets_tritons_labels_and_scores(google_served: tuple[Run, Endpoints], transport: str) -> None:
    endpoints = google_served[1]
    images = [IMAGE, encode_image("PNG", seed=8)]
    clients = clients_over(transport, endpoints)
    response = vertex_predict(clients, images, confidenceThreshold=0.0, maxPredictions=3)
    assert response.deployed_model_id == "autovision"
    for image, prediction in zip(images, response.predictions, strict=True):
        expected = triton_answer(endpoints, image)[:3]
        assert list(prediction["displayNames"]) == [p.label for p in expected]
        assert list(prediction["ids"]) == [str(p.index) for p in expected]
        assert list(prediction["confidences"]) == pytest.approx([p.score for p in expected], abs=1e-6)


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_answered_image_is_logged_whatever_the_transport(
    google_served: tuple[Run, Endpoints], transport: str
) -> None:
    """AutoML v1 and Vertex AI over REST and gRPC all log through the router's one hook (rate 1: every image)."""
    endpoints = google_served[1]
    clients = clients_over(transport, endpoints)
    before = prediction_log_counts(endpoints.gateway)["logged"]
    automl_predict(clients)
    vertex_predict(clients, [IMAGE, encode_image("PNG", seed=9)])
    with pytest.raises(REFUSALS[2].rest if transport == "rest" else REFUSALS[2].grpc):
        REFUSALS[2].call(clients)  # not an image: Triton refuses it, and nothing is logged
    assert prediction_log_counts(endpoints.gateway)["logged"] == before + 3


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusals_raise_the_clients_own_exceptions(
    google_served: tuple[Run, Endpoints], refusal: Refusal, transport: str
) -> None:
    with pytest.raises(refusal.rest if transport == "rest" else refusal.grpc, match=refusal.message):
        refusal.call(clients_over(transport, google_served[1]))
