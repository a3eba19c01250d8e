"""Serving: the local Triton model repository, the local tritonserver, and the client.

``publish`` writes a run's two Triton repositories (local and cluster) to its storage.

Names are imported lazily: writing a repository (done by the trainer at export time)
must not require tritonclient or nvidia-pytriton, which only the ``serve`` extra installs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autovision.serving.client import Prediction as Prediction
    from autovision.serving.client import PredictionError as PredictionError
    from autovision.serving.client import predict as predict
    from autovision.serving.repository import RepositoryError as RepositoryError
    from autovision.serving.repository import build_config_pbtxt as build_config_pbtxt
    from autovision.serving.repository import (
        write_local_repository as write_local_repository,
    )
    from autovision.serving.tritonserver import LocalTritonServer as LocalTritonServer
    from autovision.serving.tritonserver import TritonServerError as TritonServerError

_EXPORTS = {
    "Prediction": "client",
    "PredictionError": "client",
    "predict": "client",
    "RepositoryError": "repository",
    "build_config_pbtxt": "repository",
    "write_local_repository": "repository",
    "LocalTritonServer": "tritonserver",
    "TritonServerError": "tritonserver",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
