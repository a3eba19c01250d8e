"""Triton Python-backend model of the cluster layout's last step: logits in, class scores out.

Not imported by AutoVision: ``write_cluster_repository`` copies it into the
ensemble's postprocessing model as ``1/model.py``, next to ``backend_common.py``.
Softmax for single-label models, sigmoid for multi-label ones, the same functions
the local layout applies, so both layouts return the same scores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

_VERSION_DIR = Path(__file__).resolve().parent
if str(_VERSION_DIR) not in sys.path:
    sys.path.insert(0, str(_VERSION_DIR))

if TYPE_CHECKING:
    from autovision.serving.backend_common import activation_for, gather_tensors, io_names
else:
    from backend_common import activation_for, gather_tensors, io_names


class TritonPythonModel:
    """The postprocessing model Triton's Python backend instantiates once per instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Read the I/O names and the activation once per instance."""
        config = json.loads(args["model_config"])
        self._input_name, self._output_name = io_names(config)
        self._activate = activation_for(config)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Scores for every request's logits, all requests in one vectorised call."""
        batch = gather_tensors(requests, self._input_name)
        return batch.answer({self._output_name: self._activate(batch.stacked())})
