"""Google's own clients over REST against ``autovision serve``: only the endpoint changes.

``google-cloud-automl`` and ``google-cloud-aiplatform`` (the generated clients and the
high-level ``aiplatform.Endpoint``) with anonymous credentials get the labels and scores
tritonclient gets from Triton, and their own exception classes for each refusal (over
REST, Google's clients raise the class of the HTTP status: BadRequest for INVALID_ARGUMENT).
"""

from __future__ import annotations

import pytest
from google.cloud import aiplatform

from tests.support.google_clients import (
    ENDPOINT,
    IMAGE,
    REFUSALS,
    Refusal,
    anonymous,
    automl_predict,
    content,
    rest_clients,
    triton_answer,
    vertex_predict,
)
from tests.support.served import Endpoints, Run
from tests.support.serving import encode_image, needs_tritonserver


@pytest.mark.e2e
@needs_tritonserver
def test_automl_client_gets_tritons_labels_and_scores(google_served: tuple[Run, Endpoints]) -> None:
    endpoints = google_served[1]
    expected = triton_answer(endpoints, IMAGE)
    response = automl_predict(rest_clients(endpoints.gateway), score_threshold="0")
    assert [a.display_name for a in response.payload] == [p.label for p in expected]
    assert [a.classification.score for a in response.payload] == pytest.approx([p.score for p in expected], abs=1e-6)
    assert [a.annotation_spec_id for a in response.payload] == [str(p.index) for p in expected]
    best = automl_predict(rest_clients(endpoints.gateway), score_threshold=str(expected[0].score))
    assert [a.display_name for a in best.payload] == [expected[0].label]


@pytest.mark.e2e
@needs_tritonserver
def test_vertex_client_gets_tritons_labels_and_scores(google_served: tuple[Run, Endpoints]) -> None:
    endpoints = google_served[1]
    images = [IMAGE, encode_image("PNG", seed=8)]
    response = vertex_predict(rest_clients(endpoints.gateway), images, confidenceThreshold=0.0, maxPredictions=3)
    assert response.deployed_model_id == "autovision"
    for image, prediction in zip(images, response.predictions, strict=True):
        expected = triton_answer(endpoints, image)[:3]
        assert list(prediction["displayNames"]) == [p.label for p in expected]
        assert list(prediction["ids"]) == [str(p.index) for p in expected]
        assert list(prediction["confidences"]) == pytest.approx([p.score for p in expected], abs=1e-6)


@pytest.mark.e2e
@needs_tritonserver
def test_high_level_sdk_reads_the_endpoint_then_predicts(google_served: tuple[Run, Endpoints]) -> None:
    endpoints = google_served[1]
    aiplatform.init(
        project="my-project",
        location="us-central1",
        credentials=anonymous(),
        api_endpoint=endpoints.gateway,
        api_transport="rest",
    )
    endpoint = aiplatform.Endpoint(ENDPOINT)
    prediction = endpoint.predict(instances=[content(IMAGE)], parameters={"maxPredictions": 1})
    expected = triton_answer(endpoints, IMAGE)[0]
    assert prediction.deployed_model_id == "autovision"
    assert prediction.predictions[0]["displayNames"] == [expected.label]
    assert prediction.predictions[0]["confidences"] == pytest.approx([expected.score], abs=1e-6)
    assert [model.id for model in endpoint.list_models()] == ["autovision"]


@pytest.mark.e2e
@needs_tritonserver
@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.id for r in REFUSALS])
def test_refusals_raise_the_clients_own_exceptions(google_served: tuple[Run, Endpoints], refusal: Refusal) -> None:
    with pytest.raises(refusal.rest, match=refusal.message):
        refusal.call(rest_clients(google_served[1].gateway))
