"""Writer of the local Triton model repository (Python backend running ONNX Runtime).

Layout written for one model::

    <out_dir>/<model_name>/config.pbtxt
                          /labels.txt
                          /1/model.py          (autovision.serving.backend_model)
                          /1/preprocess.py     (autovision.preprocess, byte for byte)
                          /1/preprocess.json   (PreprocessConfig.to_json())
                          /1/model.onnx

The model takes encoded image bytes, so clients never reimplement preprocessing: the
very file used in training decodes and normalises images inside the server.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections import Counter
from pathlib import Path

from autovision import preprocess as preprocess_module
from autovision.preprocess import PreprocessConfig

INPUT_NAME = "IMAGE"
OUTPUT_NAME = "SCORES"
LABELS_FILENAME = "labels.txt"
MODEL_VERSION = "1"
MULTI_LABEL_PARAMETER = "multi_label"
# The backend's source; it imports triton_python_backend_utils, so it is copied, never imported.
BACKEND_MODEL_SOURCE = Path(__file__).with_name("backend_model.py")
PREPROCESS_SOURCE = Path(preprocess_module.__file__)
# Short enough not to add visible latency, long enough for concurrent requests to meet.
MAX_QUEUE_DELAY_MICROSECONDS = 2000

_MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RepositoryError(ValueError):
    """The inputs cannot make a valid Triton model repository."""


def preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to max_batch_size, plus max_batch_size itself.

    The dynamic batcher then forms batches whose sizes ONNX Runtime sees again and again.
    """
    sizes = {max_batch_size}
    size = 2
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


def build_config_pbtxt(model_name: str, num_labels: int, max_batch_size: int, multi_label: bool) -> str:
    """The config.pbtxt text: encoded images in, one FP32 score per label out.

    ``label_filename`` turns on Triton's classification extension, so a client asking
    for ``class_count=k`` gets "score:index:label" strings for the top k labels.
    """
    _validate_model_name(model_name)
    if num_labels < 1:
        raise RepositoryError("a classifier needs at least one label")
    if max_batch_size < 1:
        raise RepositoryError(f"max_batch_size must be at least 1, got {max_batch_size}")
    preferred = ", ".join(str(size) for size in preferred_batch_sizes(max_batch_size))
    return f"""name: "{model_name}"
backend: "python"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_STRING
    dims: [ 1 ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_FP32
    dims: [ {num_labels} ]
    label_filename: "{LABELS_FILENAME}"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_MICROSECONDS}
}}
instance_group [
  {{
    kind: KIND_CPU
    count: 1
  }}
]
parameters [
  {{
    key: "{MULTI_LABEL_PARAMETER}"
    value: {{ string_value: "{str(multi_label).lower()}" }}
  }}
]
"""


def write_local_repository(
    out_dir: Path,
    onnx_path: Path,
    labels: list[str],
    preprocess: PreprocessConfig,
    *,
    model_name: str = "autovision",
    max_batch_size: int = 16,
    multi_label: bool = False,
) -> Path:
    """Write (or replace) ``out_dir/<model_name>`` so tritonserver can serve the model.

    The model directory is built in a hidden staging directory beside ``out_dir``
    (never inside it: Triton tries to load every subdirectory of a repository) and
    renamed into place last, so a crash never leaves a half-written model that looks
    complete. Returns the model directory.
    """
    _validate_labels(labels)
    config_text = build_config_pbtxt(model_name, len(labels), max_batch_size, multi_label)
    if not onnx_path.is_file():
        raise RepositoryError(f"ONNX model {onnx_path} does not exist")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.{model_name}.{uuid.uuid4().hex}.tmp"
    try:
        new_model_dir = staging / "new"
        _write_model_dir(new_model_dir, config_text, onnx_path, labels, preprocess)
        return _swap_into_place(new_model_dir, out_dir / model_name, staging / "old")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_model_dir(
    model_dir: Path,
    config_text: str,
    onnx_path: Path,
    labels: list[str],
    preprocess: PreprocessConfig,
) -> None:
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(config_text, encoding="utf-8")
    (model_dir / LABELS_FILENAME).write_text("".join(f"{label}\n" for label in labels), "utf-8")
    shutil.copyfile(BACKEND_MODEL_SOURCE, version_dir / "model.py")
    shutil.copyfile(PREPROCESS_SOURCE, version_dir / "preprocess.py")
    (version_dir / "preprocess.json").write_text(preprocess.to_json(), encoding="utf-8")
    shutil.copyfile(onnx_path, version_dir / "model.onnx")


def _swap_into_place(new_dir: Path, final_dir: Path, old_dir: Path) -> Path:
    if final_dir.exists():
        final_dir.rename(old_dir)
    new_dir.rename(final_dir)
    return final_dir


def _validate_model_name(model_name: str) -> None:
    if not _MODEL_NAME_PATTERN.fullmatch(model_name):
        raise RepositoryError(
            f"model name {model_name!r} must start with a letter or digit and contain only "
            "letters, digits, '_', '.' and '-'"
        )


def _validate_labels(labels: list[str]) -> None:
    if not labels:
        raise RepositoryError("a classifier needs at least one label")
    bad = [label for label in labels if not label or label != label.strip() or "\n" in label]
    if bad:
        raise RepositoryError(f"labels must be non-empty single lines without padding: {bad!r}")
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise RepositoryError(f"labels must be unique, repeated: {duplicates!r}")
