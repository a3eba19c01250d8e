"""The edge formats by name, and the model a finished run's edge formats start from.

Every edge converter starts from ``torch.export``, which cannot take the run's
TorchScript archive, and torch's TorchScript-to-export converter cannot read every
family back (EfficientNet-Lite's traced "same" padding becomes a data-dependent
guard). A run keeps what rebuilds the module itself, though: its architecture in
the model card and its final weights in the checkpoint the card names (what
``--base-model`` continues from), so ``autovision export`` starts from the same
module as the run's own ``--export-formats``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from autovision.contract.files import ModelCard
from autovision.contract.keys import COREML_PACKAGE, EXECUTORCH_DIR, TFLITE_FILE, TFLITE_INT8_FILE
from autovision.data.versions import read_version
from autovision.export.edge_files import CALIBRATION_IMAGES, EdgeExportError, EdgeInput
from autovision.export.executorch_export import executorch_python, export_executorch
from autovision.export.layout import ModelLocation
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.resources import EdgeFormat
from autovision.search.base_model import find_base_model
from autovision.settings import Settings
from autovision.storage import Storage, read_uris
from autovision.train.trainer import TrialCheckpoint, restore_model

OUTPUT_NAMES = {
    EdgeFormat.TFLITE: TFLITE_FILE,
    EdgeFormat.TFLITE_INT8: TFLITE_INT8_FILE,
    EdgeFormat.COREML: COREML_PACKAGE,
    EdgeFormat.EXECUTORCH: EXECUTORCH_DIR,
}


# The modules each format imports in this venv; ExecuTorch's run in its own venv instead.
_REQUIRED_MODULES = {
    EdgeFormat.TFLITE: ("litert_torch", "ai_edge_litert"),
    EdgeFormat.TFLITE_INT8: ("litert_torch", "ai_edge_litert"),
    EdgeFormat.COREML: ("coremltools",),
    EdgeFormat.EXECUTORCH: (),
}


class EdgeUnavailableError(RuntimeError):
    """Formats this installation cannot write: said before a run spends its budget."""


def check_edge_formats(formats: Sequence[EdgeFormat], executorch_venv: Path) -> None:
    """Raise ``EdgeUnavailableError`` naming every format whose converter is not installed here, and how to add it."""
    problems = []
    for fmt in dict.fromkeys(formats):
        missing = [name for name in _REQUIRED_MODULES[fmt] if importlib.util.find_spec(name) is None]
        if missing:
            problems.append(f"{fmt}: {', '.join(missing)} not installed (pip install 'autovision[edge]')")
        elif fmt is EdgeFormat.EXECUTORCH:
            try:
                executorch_python(executorch_venv)
            except FileNotFoundError as error:
                problems.append(f"{fmt}: {error}")
    if problems:
        raise EdgeUnavailableError("cannot export " + "; ".join(problems))


def edge_input(card: ModelCard) -> EdgeInput:
    """What an edge file ships with, from the run's model card."""
    return EdgeInput(labels=tuple(card.labels), size=card.input_size, mean=card.mean, std=card.std)


def run_model(target: str, settings: Settings | None = None) -> nn.Module:
    """The finished run ``target`` names, as its final model rebuilt from its card's architecture and final
    checkpoint (eval mode, CPU, logits out); ``BaseModelError`` when it kept no checkpoint."""
    run = find_base_model(target, settings)
    return restore_model(run.training(), len(run.card.labels), TrialCheckpoint(run.storage, run.checkpoint_key))


def training_images(card: ModelCard, storage: Storage) -> torch.Tensor:
    """Up to ``CALIBRATION_IMAGES`` of the run's training images (its dataset version in ``storage``), preprocessed
    as in training: what int8 calibration reads, never a validation or test image, so the int8 file's test figures
    stay honest."""
    train = read_version(storage, card.dataset.name, card.dataset.version).where_split("train")
    uris = [record.uri for record in train[:CALIBRATION_IMAGES]]
    config = PreprocessConfig(size=card.input_size, mean=card.mean, std=card.std)
    return torch.from_numpy(preprocess_batch(read_uris(uris, storage.settings), config))


def export_edge(
    model: nn.Module,
    spec: EdgeInput,
    fmt: EdgeFormat,
    out_dir: Path,
    executorch_venv: Path,
    *,
    calibration: torch.Tensor | None = None,
) -> Path:
    """Write one edge format of ``model`` into ``out_dir`` (int8 TFLite calibrated on ``calibration``, training
    images); ``EdgeExportError`` if it cannot express the model."""
    example = torch.zeros(1, 3, spec.size, spec.size)
    target = out_dir / OUTPUT_NAMES[fmt]
    if fmt in (EdgeFormat.TFLITE, EdgeFormat.TFLITE_INT8):
        from autovision.export.tflite import export_tflite

        if fmt is EdgeFormat.TFLITE_INT8 and calibration is None:
            raise ValueError("tflite-int8 needs calibration (training) images")
        return export_tflite(model, example, spec, target, calibration if fmt is EdgeFormat.TFLITE_INT8 else None)
    if fmt is EdgeFormat.COREML:
        from autovision.export.coreml import export_coreml

        return export_coreml(model, spec, target)
    return export_executorch(model, example, spec, target, executorch_python(executorch_venv))


@dataclass(frozen=True)
class StoredFormat:
    """One format written into storage: its URI, its size in bytes, and the local copy it was uploaded from."""

    uri: str
    size_bytes: int
    path: Path


@dataclass
class StoredFormats:
    """What ``store_edge_formats`` wrote, and which formats failed, why."""

    written: dict[EdgeFormat, StoredFormat] = field(default_factory=dict)
    failures: dict[EdgeFormat, str] = field(default_factory=dict)


def store_edge_formats(
    model: nn.Module,
    spec: EdgeInput,
    formats: Sequence[EdgeFormat],
    location: ModelLocation,
    executorch_venv: Path,
    *,
    workdir: Path,
    calibration: torch.Tensor | None = None,
) -> StoredFormats:
    """Write each format beside the model in storage (keeping a local copy in ``workdir``, for measuring); one
    that fails leaves nothing and the others go on. ``calibration`` (training images) is needed for tflite-int8."""
    stored = StoredFormats()
    for fmt in dict.fromkeys(formats):
        out_dir = workdir / str(fmt)
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            written = export_edge(model, spec, fmt, out_dir, executorch_venv, calibration=calibration)
        except (EdgeExportError, FileNotFoundError) as error:
            stored.failures[fmt] = str(error)
            continue
        files = [written] if written.is_file() else sorted(p for p in written.rglob("*") if p.is_file())
        if written.is_file():
            location.storage.write_bytes(location.key(written.name), written.read_bytes())
        else:
            location.storage.upload_dir(written, location.key(written.name))
        stored.written[fmt] = StoredFormat(
            location.uri(written.name), sum(file.stat().st_size for file in files), written
        )
    return stored
