"""What every AutoVision Triton Python-backend model shares: batching requests, errors, activations.

Not imported by AutoVision: the repository writers copy this file next to each
Python model's ``model.py``, which imports it as ``backend_common``. It depends only
on NumPy, Pillow (for one exception type) and Triton's ``triton_python_backend_utils``.

All tensors of all requests Triton hands to one ``execute`` call are stacked into
one batch, so the dynamic batcher's batches reach ONNX Runtime whole; a request whose
image cannot be decoded gets its own error and the others still get answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils
from PIL import UnidentifiedImageError

FloatArray = npt.NDArray[np.float32]
MULTI_LABEL_PARAMETER = "multi_label"
# ImageLimits' fields and the config.pbtxt parameters that set them (autovision.serving.repository writes them).
IMAGE_LIMIT_PARAMETERS = {"max_bytes": "max_image_bytes", "max_pixels": "max_image_pixels"}


class ImageDecodeError(ValueError):
    """One image of one request cannot be decoded; only that request fails."""


@dataclass(frozen=True)
class Slot:
    """The rows of the shared batch that belong to one request."""

    request_index: int
    start: int
    stop: int


@dataclass
class Batch:
    """The rows of all answerable requests, and a response (or None, still to come) per request."""

    responses: list[Any]
    slots: list[Slot] = field(default_factory=list)
    rows: list[FloatArray] = field(default_factory=list)

    def add(self, request_index: int, rows: list[FloatArray]) -> None:
        """Append one request's rows."""
        self.slots.append(Slot(request_index, len(self.rows), len(self.rows) + len(rows)))
        self.rows.extend(rows)

    def stacked(self) -> FloatArray:
        """All rows as one array, batch dimension first."""
        return np.stack(self.rows)

    def answer(self, outputs: dict[str, FloatArray]) -> list[Any]:
        """Give each waiting request its rows of every output (each aligned with ``stacked()``); Triton sends
        a client only the outputs it asked for."""
        for slot in self.slots:
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(values[slot.start : slot.stop]))
                for name, values in outputs.items()
            ]
            self.responses[slot.request_index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return self.responses

    def fail(self, message: str) -> list[Any]:
        """Answer every waiting request with the same internal error."""
        for slot in self.slots:
            self.responses[slot.request_index] = error_response(message, pb_utils.TritonError.INTERNAL)
        return self.responses


def gather_images(requests: list[Any], input_name: str, decode: Callable[[bytes], FloatArray]) -> Batch:
    """Decode every encoded image of every request; undecodable ones fail only their request."""
    batch = Batch(responses=[None] * len(requests))
    for index, request in enumerate(requests):
        encoded = pb_utils.get_input_tensor_by_name(request, input_name).as_numpy()
        try:
            rows = [_decode_one(decode, input_name, position, data) for position, data in enumerate(encoded.ravel())]
        except ImageDecodeError as error:
            batch.responses[index] = error_response(str(error), pb_utils.TritonError.INVALID_ARG)
            continue
        batch.add(index, rows)
    return batch


def gather_tensors(requests: list[Any], input_name: str) -> Batch:
    """Collect one float tensor from every request (inside an ensemble they are always valid)."""
    batch = Batch(responses=[None] * len(requests))
    for index, request in enumerate(requests):
        values = pb_utils.get_input_tensor_by_name(request, input_name).as_numpy()
        batch.add(index, list(np.asarray(values, dtype=np.float32)))
    return batch


def _decode_one(decode: Callable[[bytes], FloatArray], input_name: str, position: int, data: bytes) -> FloatArray:
    try:
        return decode(data)
    # Pillow signals unreadable input with many exception types (OSError,
    # SyntaxError, ValueError, DecompressionBombError...): any of them means this
    # image, and only this request, is bad.
    except Exception as error:
        raise ImageDecodeError(
            f"{input_name}[{position}] is not a decodable image ({len(data)} bytes): {_describe(error)}"
        ) from error


def _describe(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not in an image format Pillow can read"  # its own message names a BytesIO
    return f"{type(error).__name__}: {error}"


def error_response(message: str, code: Any) -> Any:
    """A response that fails one request with a readable message."""
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def io_names(config: dict[str, Any]) -> tuple[str, str]:
    """The model's one input and its first output tensor name, as its config.pbtxt declares them."""
    return str(config["input"][0]["name"]), str(config["output"][0]["name"])


def output_names(config: dict[str, Any]) -> list[str]:
    """Every output tensor name config.pbtxt declares, in order: the scores, then the embedding if listed."""
    return [str(output["name"]) for output in config["output"]]


def image_limit_parameters(config: dict[str, Any]) -> dict[str, int]:
    """``ImageLimits`` keyword arguments from config.pbtxt; a repository written without them keeps the defaults."""
    values = config.get("parameters", {})
    return {field: int(values[key]["string_value"]) for field, key in IMAGE_LIMIT_PARAMETERS.items() if key in values}


def activation_for(config: dict[str, Any]) -> Callable[[FloatArray], FloatArray]:
    """Softmax for single-label models, sigmoid for multi-label ones, as config.pbtxt says."""
    try:
        multi_label = config["parameters"][MULTI_LABEL_PARAMETER]["string_value"] == "true"
    except KeyError:
        raise ValueError(
            f'config.pbtxt lacks the "{MULTI_LABEL_PARAMETER}" parameter; rewrite the repository'
        ) from None
    return sigmoid if multi_label else softmax


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, numerically stable."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)


def sigmoid(logits: FloatArray) -> FloatArray:
    """Element-wise sigmoid that never overflows: exp(-log(1 + exp(-x)))."""
    return np.asarray(np.exp(-np.logaddexp(0.0, -logits)), dtype=np.float32)
