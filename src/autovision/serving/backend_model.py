"""Triton Python-backend model of the local layout: encoded images in, class scores out.

This file is not imported by AutoVision: ``write_local_repository`` copies it into a
model repository as ``<model>/1/model.py``, next to ``backend_common.py``,
``preprocess.py`` (the project's one preprocessing definition), ``preprocess.json``
and ``model.onnx``. Inside Triton it decodes and normalises every image with that
same preprocessing, runs all images of all requests of a dynamic batch through one
ONNX Runtime call, and turns logits into scores: softmax for single-label models,
sigmoid for multi-label ones. Where config.pbtxt lists a second output (the
embedding), the ONNX model's second output is returned under that name as is.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

_VERSION_DIR = Path(__file__).resolve().parent
# The stub usually puts the version directory on sys.path already; this makes the
# sibling modules importable whatever the Triton release.
if str(_VERSION_DIR) not in sys.path:
    sys.path.insert(0, str(_VERSION_DIR))

if TYPE_CHECKING:
    from autovision.preprocess import ImageLimits, PreprocessConfig, preprocess_bytes
    from autovision.serving.backend_common import (
        activation_for,
        gather_images,
        image_limit_parameters,
        io_names,
        output_names,
    )
else:
    from backend_common import activation_for, gather_images, image_limit_parameters, io_names, output_names
    from preprocess import ImageLimits, PreprocessConfig, preprocess_bytes


class TritonPythonModel:
    """The model Triton's Python backend instantiates once per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the ONNX session, the preprocessing and the I/O names once per instance."""
        version_dir = Path(args["model_repository"]) / args["model_version"]
        config = json.loads(args["model_config"])
        self._input_name, _ = io_names(config)
        self._output_names = output_names(config)
        self._activate = activation_for(config)
        preprocess = PreprocessConfig.from_json((version_dir / "preprocess.json").read_text(encoding="utf-8"))
        limits = ImageLimits(**image_limit_parameters(config))
        self._decode = functools.partial(preprocess_bytes, config=preprocess, limits=limits)
        self._session = ort.InferenceSession(str(version_dir / "model.onnx"), providers=execution_providers(args))
        self._onnx_input: str = self._session.get_inputs()[0].name
        self._onnx_outputs = _onnx_outputs_for(self._session, len(self._output_names))
        _check_label_count(self._session, int(config["output"][0]["dims"][-1]))

    def execute(self, requests: list[Any]) -> list[Any]:
        """Answer every request: scores for good ones, an error for those with bad images."""
        batch = gather_images(requests, self._input_name, self._decode)
        if not batch.slots:
            return batch.responses
        try:
            logits, *rest = self._session.run(self._onnx_outputs, {self._onnx_input: batch.stacked()})
        # Whatever ONNX Runtime raises must fail these requests, not kill the model.
        except Exception as error:  # noqa: BLE001
            return batch.fail(f"inference failed: {type(error).__name__}: {error}")
        scores = self._activate(np.asarray(logits, dtype=np.float32))
        values = [scores, *(np.asarray(value, dtype=np.float32) for value in rest)]
        return batch.answer(dict(zip(self._output_names, values, strict=True)))


def execution_providers(args: dict[str, str]) -> list[Any]:
    """CUDA on the instance's GPU for a KIND_GPU instance (when onnxruntime-gpu has it), else CPU."""
    if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
        device = int(args.get("model_instance_device_id", "0"))
        return [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _onnx_outputs_for(session: Any, count: int) -> list[str]:
    """The ONNX model's first ``count`` output names, for config.pbtxt's outputs (scores, then embedding)."""
    names = [output.name for output in session.get_outputs()]
    if len(names) < count:
        raise ValueError(f"config.pbtxt lists {count} outputs but model.onnx has {len(names)}: {names}")
    return names[:count]


def _check_label_count(session: Any, num_labels: int) -> None:
    classes = session.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != num_labels:
        raise ValueError(f"model.onnx outputs {classes} classes but labels.txt lists {num_labels} labels")
