"""What only the REST routes serve: the high-level ``aiplatform.Endpoint`` reads the endpoint, then predicts.

Predictions and refusals over both transports are tested in ``test_google_service.py``.
"""

from __future__ import annotations

import pytest
from google.cloud import aiplatform

from tests.support.google_clients import (
    ENDPOINT,
    IMAGE,
    anonymous,
    content,
    triton_answer,
)
from tests.support.served import Endpoints, Run
from tests.support.serving import needs_tritonserver


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
