"""Google's AutoML v1 and Vertex AI dialects: parsing, answers and error statuses, without a server."""

from __future__ import annotations

import base64
from typing import Any

import grpc
import pytest

from autovision.serving import google_api
from autovision.serving.client import Prediction
from autovision.serving.gateway import GatewayError

SCORED = [Prediction("cat", 0.2, 0), Prediction("dog", 0.7, 1), Prediction("fox", 0.1, 2)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def automl_body(data: bytes = b"img", **params: str) -> dict[str, Any]:
    return {"payload": {"image": {"imageBytes": b64(data)}}, "params": params}


def test_automl_request_takes_the_image_and_score_threshold() -> None:
    assert google_api.parse_automl_request(automl_body(score_threshold="0.25"), 10, 0.5) == (b"img", 0.25)
    assert google_api.parse_automl_request({"payload": {"image": {"imageBytes": b64(b"x")}}}, 10, 0.5) == (b"x", 0.5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (automl_body(max_bounding_box_count="3"), "params.max_bounding_box_count is not supported"),
        ({"payload": {"image": {"imageBytes": b64(b"x")}}, "params": ["score_threshold"]}, "params must be"),
        (automl_body(score_threshold="2"), "must be in"),
        ({"payload": {"textSnippet": {"content": "hi"}}}, "expected"),
    ],
)
def test_automl_request_refusals_name_what_is_wrong(body: Any, message: str) -> None:
    with pytest.raises(GatewayError, match=message) as caught:
        google_api.parse_automl_request(body, 10, 0.5)
    assert google_api.google_status(caught.value) == google_api.INVALID_ARGUMENT


def test_automl_response_is_annotation_payloads_best_first() -> None:
    assert google_api.build_automl_response(SCORED, 0.15) == {
        "payload": [
            {"annotationSpecId": "1", "displayName": "dog", "classification": {"score": 0.7}},
            {"annotationSpecId": "0", "displayName": "cat", "classification": {"score": 0.2}},
        ]
    }


def test_vertex_request_decodes_each_instance_and_the_parameters() -> None:
    body = {
        "instances": [{"content": b64(b"one")}, {"content": base64.urlsafe_b64encode(b"\xfb\xff").decode()}],
        "parameters": {"confidenceThreshold": 0.3, "maxPredictions": 2.0},
    }
    assert google_api.parse_vertex_request(body, 10) == google_api.VertexRequest([b"one", b"\xfb\xff"], 0.3, 2)
    defaults = google_api.parse_vertex_request({"instances": [{"content": b64(b"x"), "mimeType": "image/png"}]}, 10)
    assert (defaults.confidence_threshold, defaults.max_predictions) == (0.0, 10)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"instances": []}, 400, "expected"),
        ({"instances": [{"image": "x"}]}, 400, r"instances\[0\] must be"),
        ({"instances": [{"content": "%%"}]}, 400, "not valid base64"),
        ({"instances": [{"content": b64(b"x"), "gcsUri": "gs://b/o"}]}, 400, r"instances\[0\].gcsUri is not supported"),
        ({"instances": [{"content": b64(b"x" * 11)}]}, 413, "exceeds the 10-byte limit"),
        ({"instances": [{"content": b64(b"x")}] * 33}, 400, "33 instances exceed the limit of 32"),
        ({"instances": [{"content": b64(b"x")}], "parameters": {"maxPredictions": 0}}, 400, "at least 1"),
        ({"instances": [{"content": b64(b"x")}], "parameters": {"maxPredictions": 1.5}}, 400, "an integer"),
        ({"instances": [{"content": b64(b"x")}], "parameters": {"confidenceThreshold": "1"}}, 400, r"\[0, 1\]"),
        ({"instances": [{"content": b64(b"x")}], "parameters": {"topK": 3}}, 400, "parameters.topK is not"),
        ({"instances": [{"content": b64(b"x")}], "parameters": [1]}, 400, "must be an object"),
    ],
)
def test_vertex_request_refusals(body: Any, status: int, message: str) -> None:
    with pytest.raises(GatewayError, match=message) as caught:
        google_api.parse_vertex_request(body, 10)
    assert caught.value.status == status
    assert google_api.google_status(caught.value) == google_api.INVALID_ARGUMENT


def test_vertex_prediction_applies_threshold_then_the_limit() -> None:
    request = google_api.VertexRequest([b"x"], confidence_threshold=0.15, max_predictions=1)
    assert google_api.build_vertex_prediction(SCORED, request) == {
        "ids": ["1"],
        "displayNames": ["dog"],
        "confidences": [0.7],
    }
    response = google_api.build_vertex_response([{"ids": []}], "flowers")
    assert response == {"predictions": [{"ids": []}], "deployedModelId": "flowers"}


def test_resource_names_ignore_project_and_location() -> None:
    assert google_api.parse_resource_name("projects/p/locations/us-central1/models/flowers", "models") == "flowers"
    for name in ("projects/p/locations/l/endpoints/flowers", "models/flowers", "projects/p/locations/l/models/"):
        with pytest.raises(GatewayError, match="expected a name") as caught:
            google_api.parse_resource_name(name, "models")
        assert caught.value.status == 400
    google_api.check_served("flowers", "flowers")
    with pytest.raises(GatewayError, match="'tulips' is not served here") as missing:
        google_api.check_served("tulips", "flowers")
    assert google_api.google_status(missing.value) == google_api.NOT_FOUND


@pytest.mark.parametrize(
    ("status", "retry", "name", "http", "code"),
    [
        (400, None, "INVALID_ARGUMENT", 400, grpc.StatusCode.INVALID_ARGUMENT),
        (413, None, "INVALID_ARGUMENT", 400, grpc.StatusCode.INVALID_ARGUMENT),
        (404, None, "NOT_FOUND", 404, grpc.StatusCode.NOT_FOUND),
        (408, None, "DEADLINE_EXCEEDED", 504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (503, 1, "UNAVAILABLE", 503, grpc.StatusCode.UNAVAILABLE),
        (502, None, "INTERNAL", 500, grpc.StatusCode.INTERNAL),
    ],
)
def test_errors_take_googles_shape(status: int, retry: int | None, name: str, http: int, code: grpc.StatusCode) -> None:
    error = GatewayError(status, "why", retry)
    assert google_api.error_body(error) == {"error": {"code": http, "message": "why", "status": name}}
    assert google_api.google_status(error).grpc_code == code


def test_endpoint_resource_has_one_deployed_model_with_all_traffic() -> None:
    assert google_api.build_endpoint("p", "l", "flowers", "flowers") == {
        "name": "projects/p/locations/l/endpoints/flowers",
        "displayName": "flowers",
        "deployedModels": [
            {"id": "flowers", "model": "projects/p/locations/l/models/flowers", "displayName": "flowers"}
        ],
        "trafficSplit": {"flowers": 100},
    }


def test_vertex_explain_request_takes_the_explainers_settings_from_the_parameters() -> None:
    body = {"instances": [{"content": b64(b"one")}], "parameters": {"maxPredictions": 2, "label": "b", "steps": 8}}
    request, settings = google_api.parse_vertex_explain_request(body, 10)
    assert request == google_api.VertexRequest([b"one"], google_api.VERTEX_DEFAULT_CONFIDENCE_THRESHOLD, 2)
    assert settings == {"label": "b", "steps": 8}
    assert google_api.parse_vertex_explain_request({"instances": [{"content": b64(b"x")}]}, 10)[1] == {}
    with pytest.raises(GatewayError, match=r"parameters\.colour is not supported"):
        google_api.parse_vertex_explain_request(
            {"instances": [{"content": b64(b"x")}], "parameters": {"colour": 1}}, 10
        )


def test_vertex_explanation_holds_the_heatmap_of_the_explained_label() -> None:
    explained = {
        "payload": [],
        "explanation": {"displayName": "b", "score": 0.75, "method": "grad_cam", "overlayPng": "iVBO", "grid": [[1.0]]},
    }
    assert google_api.explainer_body(b"one", {"label": "b"}) == {
        "payload": {"image": {"imageBytes": b64(b"one")}},
        "params": {"label": "b"},
    }
    explanation = google_api.build_vertex_explanation(explained)
    assert explanation == {
        "attributions": [
            {
                "outputDisplayName": "b",
                "instanceOutputValue": 0.75,
                "featureAttributions": {"method": "grad_cam", "overlayPng": "iVBO", "grid": [[1.0]]},
            }
        ]
    }
    response = google_api.build_vertex_explain_response([{"ids": ["1"]}], [explanation], "autovision")
    assert response == {"predictions": [{"ids": ["1"]}], "deployedModelId": "autovision", "explanations": [explanation]}
