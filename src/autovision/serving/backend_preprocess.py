"""Triton Python-backend model of the cluster layout's first step: encoded images in, model inputs out.

Not imported by AutoVision: ``write_cluster_repository`` copies it into the
ensemble's preprocessing model as ``1/model.py``, next to ``backend_common.py``,
``preprocess.py`` (the project's one preprocessing definition) and
``preprocess.json``. It decodes, resizes and normalises every image of every
request exactly as training did, and hands float32 NCHW tensors to the ONNX model.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

_VERSION_DIR = Path(__file__).resolve().parent
if str(_VERSION_DIR) not in sys.path:
    sys.path.insert(0, str(_VERSION_DIR))

if TYPE_CHECKING:
    from autovision.preprocess import ImageLimits, PreprocessConfig, preprocess_bytes
    from autovision.serving.backend_common import gather_images, image_limit_parameters, io_names
else:
    from backend_common import gather_images, image_limit_parameters, io_names
    from preprocess import ImageLimits, PreprocessConfig, preprocess_bytes


class TritonPythonModel:
    """The preprocessing model Triton's Python backend instantiates once per instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the I/O names and the preprocessing once per instance."""
        version_dir = Path(args["model_repository"]) / args["model_version"]
        config = json.loads(args["model_config"])
        self._input_name, self._output_name = io_names(config)
        preprocess = PreprocessConfig.from_json((version_dir / "preprocess.json").read_text(encoding="utf-8"))
        limits = ImageLimits(**image_limit_parameters(config))
        self._decode = functools.partial(preprocess_bytes, config=preprocess, limits=limits)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Model inputs for requests whose images decode, an error for the others."""
        batch = gather_images(requests, self._input_name, self._decode)
        return batch.answer({self._output_name: batch.stacked()}) if batch.slots else batch.responses
