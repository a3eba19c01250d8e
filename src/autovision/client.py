"""AutoVision's Python client: one import for every way to ask a served model.

``predict`` speaks KServe v2 to Triton (HTTP or gRPC, through tritonclient);
``predict_automl`` speaks Google AutoML Vision's JSON to the gateway, so code
written for AutoML moves over by changing the endpoint.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from autovision.serving.client import Prediction, PredictionError, predict

__all__ = ["AutoMLPrediction", "Prediction", "PredictionError", "predict", "predict_automl"]

RETRYABLE_STATUSES = {502, 503, 504}


@dataclass(frozen=True)
class AutoMLPrediction:
    """One entry of an AutoML predict response."""

    display_name: str
    score: float


def predict_automl(
    image: bytes,
    endpoint: str,
    *,
    model_name: str = "autovision",
    score_threshold: float | None = None,
    timeout_s: float = 30.0,
    retries: int = 2,
) -> list[AutoMLPrediction]:
    """POST ``/v1/models/{model}:predict`` to a gateway; retry only what may pass later."""
    body: dict[str, object] = {"payload": {"image": {"imageBytes": base64.b64encode(image).decode()}}}
    if score_threshold is not None:
        body["params"] = {"score_threshold": str(score_threshold)}
    request = urllib.request.Request(
        f"{endpoint.rstrip('/')}/v1/models/{model_name}:predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    answer = _send_with_retries(request, timeout_s, retries)
    return [AutoMLPrediction(item["displayName"], float(item["classification"]["score"])) for item in answer["payload"]]


def _send_with_retries(request: urllib.request.Request, timeout_s: float, retries: int) -> dict[str, Any]:
    attempt = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_STATUSES or attempt >= retries:
                raise PredictionError(f"{request.full_url}: HTTP {error.code}: {_error_message(error)}") from error
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            if attempt >= retries:
                raise PredictionError(f"{request.full_url} is unreachable: {error}") from error
        attempt += 1
        time.sleep(0.2 * 2**attempt)


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return error.reason
