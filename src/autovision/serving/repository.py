"""Writer of the local Triton model repository (Python backend running ONNX Runtime), and its download.

Layout written for one model::

    <out_dir>/<model_name>/config.pbtxt
                          /labels.txt
                          /1/model.py          (autovision.serving.backend_model)
                          /1/backend_common.py (autovision.serving.backend_common)
                          /1/preprocess.py     (autovision.preprocess, byte for byte)
                          /1/preprocess.json   (PreprocessConfig.to_json())
                          /1/model.onnx

config.pbtxt lists two outputs where the ONNX model has an embedding: ``SCORES``
and ``embedding`` (``EMBEDDING_OUTPUT``, float32 [batch, D]); clients that ask for
scores only get scores only. The model takes encoded image bytes, so clients never reimplement preprocessing: the
very file used in training decodes and normalises images inside the server. The
cluster layout (``autovision.serving.cluster``) exposes the same interface.
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from autovision import preprocess as preprocess_module
from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.preprocess import DEFAULT_DECODE_MEMORY_BYTES, ImageLimits, PreprocessConfig
from autovision.serving.model_config import (
    TRITON_ONNX_FILE,
    InstanceKind,
    RepositoryError,
    TensorSpec,
    dynamic_batching,
    instance_group,
    model_config,
    parameters,
    validate_model_name,
)
from autovision.settings import Settings
from autovision.storage import Storage

__all__ = [
    "INPUT_NAME",
    "LABELS_FILENAME",
    "OUTPUT_NAME",
    "InstanceKind",
    "RepositoryError",
    "build_config_pbtxt",
    "download_repository",
    "write_local_repository",
]

INPUT_NAME = "IMAGE"
OUTPUT_NAME = "SCORES"
LABELS_FILENAME = "labels.txt"
MODEL_VERSION = "1"
# Read by backend_common.activation_for inside Triton.
MULTI_LABEL_PARAMETER = "multi_label"
# Read by backend_common.image_limit_parameters inside Triton.
MAX_IMAGE_BYTES_PARAMETER = "max_image_bytes"
MAX_IMAGE_PIXELS_PARAMETER = "max_image_pixels"
# The backends' sources import triton_python_backend_utils, so they are copied, never imported.
_SERVING_DIR = Path(__file__).parent
BACKEND_MODEL_SOURCE = _SERVING_DIR / "backend_model.py"
BACKEND_COMMON_SOURCE = _SERVING_DIR / "backend_common.py"
PREPROCESS_SOURCE = Path(preprocess_module.__file__)

ModelWriter = Callable[[Path], None]


def image_input() -> TensorSpec:
    """The interface's input: one encoded image (JPEG, PNG, ...) per batch row."""
    return TensorSpec(INPUT_NAME, "TYPE_STRING", (1,))


def scores_output(num_labels: int) -> TensorSpec:
    """The interface's output: one score per label, labelled for Triton's classification extension."""
    if num_labels < 1:
        raise RepositoryError("a classifier needs at least one label")
    return TensorSpec(OUTPUT_NAME, "TYPE_FP32", (num_labels,), LABELS_FILENAME)


def embedding_output(size: int) -> TensorSpec:
    """The interface's second output, where the model has one: its embedding, ``size`` floats per image."""
    return TensorSpec(EMBEDDING_OUTPUT, "TYPE_FP32", (size,))


def multi_label_parameter(multi_label: bool) -> dict[str, str]:
    """The parameter telling a backend whether scores are softmax or sigmoid."""
    return {MULTI_LABEL_PARAMETER: str(multi_label).lower()}


@dataclass(frozen=True)
class DecodeBudget:
    """What a decoding Triton model accepts, and the memory its instances may spend on decoded images.

    Each Python-backend instance is one process decoding one image at a time, so
    the instance count is the number of images decoded at once: within the budget
    even when every image is as large as the pixel limit allows.
    """

    limits: ImageLimits = field(default_factory=ImageLimits)
    memory_bytes: int = DEFAULT_DECODE_MEMORY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeBudget:
        """The budget the settings give (``max_image_*``, ``decode_memory_bytes``)."""
        return cls(settings.image_limits(), settings.decode_memory_bytes)

    def instances(self) -> int:
        """Model instances that together stay within the budget."""
        return self.limits.decode_slots(self.memory_bytes)

    def parameters(self) -> dict[str, str]:
        """The limits as config.pbtxt parameters, for the backend to enforce."""
        return {
            MAX_IMAGE_BYTES_PARAMETER: str(self.limits.max_bytes),
            MAX_IMAGE_PIXELS_PARAMETER: str(self.limits.max_pixels),
        }


DEFAULT_DECODE_BUDGET = DecodeBudget()


def build_config_pbtxt(
    model_name: str,
    num_labels: int,
    max_batch_size: int,
    multi_label: bool,
    instance_kind: InstanceKind = InstanceKind.CPU,
    *,
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
    embedding_size: int | None = None,
) -> str:
    """The local model's config.pbtxt: encoded images in, one FP32 score per label out (and the embedding,
    given its size).

    ``label_filename`` turns on Triton's classification extension, so a client asking
    for ``class_count=k`` gets "score:index:label" strings for the top k labels.
    """
    return model_config(
        model_name,
        {"backend": "python"},
        max_batch_size,
        inputs=[image_input()],
        outputs=[scores_output(num_labels), *([] if embedding_size is None else [embedding_output(embedding_size)])],
        sections=[
            dynamic_batching(max_batch_size),
            instance_group(instance_kind, budget.instances()),
            parameters({**multi_label_parameter(multi_label), **budget.parameters()}),
        ],
    )


def write_local_repository(
    out_dir: Path,
    onnx_path: Path,
    labels: list[str],
    preprocess: PreprocessConfig,
    *,
    model_name: str = "autovision",
    max_batch_size: int = 16,
    multi_label: bool = False,
    instance_kind: InstanceKind = InstanceKind.CPU,
    budget: DecodeBudget = DEFAULT_DECODE_BUDGET,
) -> Path:
    """Write (or replace) ``out_dir/<model_name>`` so tritonserver can serve the model.

    Returns the model directory. See ``install_models`` for how a crash is kept harmless.
    """
    validate_labels(labels)
    require_file(onnx_path, "ONNX model")
    # Imported here: onnx is the trainer's, and the serving image reads repositories through this module.
    from autovision.serving.onnx_signature import read_onnx_signature

    embedding_size = read_onnx_signature(onnx_path).embedding_size
    config_text = build_config_pbtxt(
        model_name,
        len(labels),
        max_batch_size,
        multi_label,
        instance_kind,
        budget=budget,
        embedding_size=embedding_size,
    )

    def write(model_dir: Path) -> None:
        write_model_dir(model_dir, config_text, labels)
        version_dir = write_python_backend(model_dir, BACKEND_MODEL_SOURCE, preprocess)
        shutil.copyfile(onnx_path, version_dir / TRITON_ONNX_FILE)

    return install_models(out_dir, {model_name: write})[model_name]


def write_model_dir(model_dir: Path, config_text: str, labels: list[str] | None = None) -> Path:
    """Create a model directory with its config.pbtxt (and labels.txt); return its version directory."""
    version_dir = model_dir / MODEL_VERSION
    version_dir.mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(config_text, encoding="utf-8")
    if labels is not None:
        (model_dir / LABELS_FILENAME).write_text("".join(f"{label}\n" for label in labels), "utf-8")
    return version_dir


def write_python_backend(model_dir: Path, backend_source: Path, preprocess: PreprocessConfig | None) -> Path:
    """Copy a backend model and its helpers into the version directory; return that directory."""
    version_dir = model_dir / MODEL_VERSION
    shutil.copyfile(backend_source, version_dir / "model.py")
    shutil.copyfile(BACKEND_COMMON_SOURCE, version_dir / "backend_common.py")
    if preprocess is not None:
        shutil.copyfile(PREPROCESS_SOURCE, version_dir / "preprocess.py")
        (version_dir / "preprocess.json").write_text(preprocess.to_json(), encoding="utf-8")
    return version_dir


def install_models(out_dir: Path, writers: dict[str, ModelWriter]) -> dict[str, Path]:
    """Build each model directory in staging, then rename each into ``out_dir``; return them.

    Staging lives beside ``out_dir``, never inside it (Triton tries to load every
    subdirectory of a repository), and a model directory is renamed into place only
    once complete, so a crash never leaves a half-written model that looks complete.
    """
    for name in writers:
        validate_model_name(name)
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.{uuid.uuid4().hex}.tmp"
    try:
        for name, write in writers.items():
            write(staging / "new" / name)
        (staging / "old").mkdir()
        return {
            name: _swap_into_place(staging / "new" / name, out_dir / name, staging / "old" / name) for name in writers
        }
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(new_dir: Path, final_dir: Path, old_dir: Path) -> Path:
    if final_dir.exists():
        final_dir.rename(old_dir)
    new_dir.rename(final_dir)
    return final_dir


def require_file(path: Path, what: str) -> None:
    """Fail before anything is written when an input file is missing."""
    if not path.is_file():
        raise RepositoryError(f"{what} {path} does not exist")


def validate_labels(labels: list[str]) -> None:
    """Labels become lines of labels.txt: non-empty, single-line, unpadded and unique."""
    if not labels:
        raise RepositoryError("a classifier needs at least one label")
    bad = [label for label in labels if not label or label != label.strip() or "\n" in label]
    if bad:
        raise RepositoryError(f"labels must be non-empty single lines without padding: {bad!r}")
    duplicates = sorted(label for label, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise RepositoryError(f"labels must be unique, repeated: {duplicates!r}")


def download_repository(storage: Storage, prefix: str, directory: Path) -> Path:
    """A local copy of a stored Triton repository, appearing whole or not at all; an existing copy is reused.

    Runs keep their repositories in storage (``file://`` or ``s3://``), but tritonserver reads a
    local directory: the quickstart and ``autovision serve`` both go through here.
    """
    if not directory.exists():
        staging = directory.with_name(directory.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        if not storage.download_prefix(prefix, staging):
            raise RepositoryError(f"{storage.uri(prefix)} holds no Triton repository")
        staging.replace(directory)
    return directory
