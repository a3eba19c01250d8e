"""Triton Python-backend model: encoded images in, class scores out.

This file is not imported by AutoVision: ``write_local_repository`` copies it into a
model repository as ``<model>/1/model.py``, next to ``preprocess.py`` (the project's
one preprocessing definition), ``preprocess.json`` and ``model.onnx``. Inside Triton
it decodes and normalises every image with that same preprocessing, runs all images
of all requests of a dynamic batch through one ONNX Runtime call, and turns logits
into scores: softmax for single-label models, sigmoid for multi-label ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from PIL import UnidentifiedImageError

_VERSION_DIR = Path(__file__).resolve().parent
# The stub usually puts the version directory on sys.path already; this makes the
# sibling preprocess.py importable whatever the Triton release.
if str(_VERSION_DIR) not in sys.path:
    sys.path.insert(0, str(_VERSION_DIR))

if TYPE_CHECKING:
    from autovision.preprocess import PreprocessConfig, preprocess_bytes
else:
    from preprocess import PreprocessConfig, preprocess_bytes


class ImageDecodeError(ValueError):
    """One image of one request cannot be decoded; only that request fails."""


@dataclass(frozen=True)
class _Pending:
    """The rows of the shared batch that belong to one request."""

    request_index: int
    start: int
    stop: int


class TritonPythonModel:
    """The model Triton's Python backend instantiates once per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the ONNX session, the preprocessing and the I/O names once per instance."""
        version_dir = Path(args["model_repository"]) / args["model_version"]
        config = json.loads(args["model_config"])
        self._input_name: str = config["input"][0]["name"]
        self._output_name: str = config["output"][0]["name"]
        self._activate = _sigmoid if _is_multi_label(config) else _softmax
        self._preprocess = PreprocessConfig.from_json((version_dir / "preprocess.json").read_text(encoding="utf-8"))
        self._session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        self._onnx_input: str = self._session.get_inputs()[0].name
        self._onnx_output: str = self._session.get_outputs()[0].name
        _check_label_count(self._session, int(config["output"][0]["dims"][-1]))

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request: scores for good ones, an error for those with bad images."""
        responses: list[Any] = [None] * len(requests)
        arrays: list[npt.NDArray[np.float32]] = []
        pending: list[_Pending] = []
        for index, request in enumerate(requests):
            try:
                images = self._preprocess_request(request)
            except ImageDecodeError as error:
                responses[index] = _error_response(str(error), pb_utils.TritonError.INVALID_ARG)
                continue
            pending.append(_Pending(index, len(arrays), len(arrays) + len(images)))
            arrays.extend(images)
        if pending:
            self._answer(pending, np.stack(arrays), responses)
        return responses

    def _preprocess_request(self, request: Any) -> list[npt.NDArray[np.float32]]:
        encoded = pb_utils.get_input_tensor_by_name(request, self._input_name).as_numpy()
        return [self._preprocess_image(position, data) for position, data in enumerate(encoded.ravel())]

    def _preprocess_image(self, position: int, data: bytes) -> npt.NDArray[np.float32]:
        try:
            return preprocess_bytes(data, self._preprocess)
        # Pillow signals unreadable input with many exception types (OSError,
        # SyntaxError, ValueError, DecompressionBombError...): any of them means this
        # image, and only this request, is bad.
        except Exception as error:
            raise ImageDecodeError(
                f"{self._input_name}[{position}] is not a decodable image ({len(data)} bytes): {_describe(error)}"
            ) from error

    def _answer(
        self,
        pending: list[_Pending],
        batch: npt.NDArray[np.float32],
        responses: list[Any],
    ) -> None:
        try:
            (logits,) = self._session.run([self._onnx_output], {self._onnx_input: batch})
        # Whatever ONNX Runtime raises must fail these requests, not kill the model.
        except Exception as error:  # noqa: BLE001
            message = f"inference failed: {type(error).__name__}: {error}"
            for item in pending:
                responses[item.request_index] = _error_response(message, pb_utils.TritonError.INTERNAL)
            return
        scores = self._activate(np.asarray(logits, dtype=np.float32))
        for item in pending:
            tensor = pb_utils.Tensor(self._output_name, scores[item.start : item.stop])
            responses[item.request_index] = pb_utils.InferenceResponse(output_tensors=[tensor])


def _is_multi_label(config: dict[str, Any]) -> bool:
    try:
        return bool(config["parameters"]["multi_label"]["string_value"] == "true")
    except KeyError:
        raise ValueError('config.pbtxt lacks the "multi_label" parameter; rewrite the repository') from None


def _describe(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "not in an image format Pillow can read"  # its own message names a BytesIO
    return f"{type(error).__name__}: {error}"


def _check_label_count(session: Any, num_labels: int) -> None:
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != num_labels:
        raise ValueError(f"model.onnx outputs {classes} classes but labels.txt lists {num_labels} labels")


def _error_response(message: str, code: Any) -> Any:
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def _softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float32)


def _sigmoid(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # exp(-log(1 + exp(-x))) never overflows, unlike 1 / (1 + exp(-x)).
    return np.asarray(np.exp(-np.logaddexp(0.0, -logits)), dtype=np.float32)
