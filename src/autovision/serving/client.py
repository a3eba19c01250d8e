"""Top-k predictions from a served AutoVision model over KServe v2 HTTP or gRPC.

The request carries the encoded image as one BYTES element and asks Triton's
classification extension for the top k scores, so the client needs neither the
preprocessing nor the label list: the server holds both.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from autovision.serving.repository import INPUT_NAME, OUTPUT_NAME

Protocol = Literal["http", "grpc"]

# Both tritonclient modules expose the same InferInput / InferRequestedOutput /
# InferenceServerClient API; only where a timeout is passed differs.
_CLIENT_MODULES: dict[str, ModuleType] = {"http": httpclient, "grpc": grpcclient}


class PredictionError(RuntimeError):
    """The server could not be reached or refused the request; the message says why."""


@dataclass(frozen=True)
class Prediction:
    """One label of the top k: its name, score (probability) and index in labels.txt."""

    label: str
    score: float
    index: int


def predict(
    image: bytes,
    url: str,
    *,
    protocol: Protocol = "http",
    model_name: str = "autovision",
    top_k: int = 3,
    timeout_s: float = 30.0,
) -> list[Prediction]:
    """Send one encoded image (JPEG, PNG, ...) and return the top_k labels, best first."""
    if protocol not in _CLIENT_MODULES:
        raise ValueError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    module = _CLIENT_MODULES[protocol]
    image_input = module.InferInput(INPUT_NAME, [1, 1], "BYTES")
    image_input.set_data_from_numpy(np.array([[image]], dtype=np.object_))
    scores = module.InferRequestedOutput(OUTPUT_NAME, class_count=top_k)
    client_kwargs, infer_kwargs = _timeouts(protocol, timeout_s)
    try:
        with module.InferenceServerClient(url, **client_kwargs) as client:
            result = client.infer(model_name, [image_input], outputs=[scores], **infer_kwargs)
    except InferenceServerException as error:
        raise PredictionError(f"{model_name} at {url} ({protocol}): {error.message()}") from error
    except OSError as error:  # refused, reset or timed out below the HTTP client
        raise PredictionError(f"{model_name} at {url} ({protocol}) is unreachable: {error}") from error
    return parse_classification(result.as_numpy(OUTPUT_NAME))


def parse_classification(entries: npt.NDArray[np.object_]) -> list[Prediction]:
    """Turn Triton's "score:index:label" classification strings into Predictions."""
    predictions = []
    for entry in entries.ravel():
        text = entry.decode("utf-8") if isinstance(entry, bytes) else str(entry)
        score, index, label = text.split(":", 2)
        predictions.append(Prediction(label=label, score=float(score), index=int(index)))
    return predictions


def _timeouts(protocol: Protocol, timeout_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword arguments for the client constructor and for infer() that bound the call."""
    if protocol == "http":
        return {"connection_timeout": timeout_s, "network_timeout": timeout_s}, {}
    return {}, {"client_timeout": timeout_s}
