"""A finished run the explainer can serve: a tiny residual CNN's model.pt, model.onnx and model.json, and the
Triton repository of that same ONNX model (for ``autovision serve --explain``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR, ONNX_FILE, TORCHSCRIPT_FILE, TRITON_LOCAL
from autovision.export.card import artifact_uris
from autovision.export.layout import ModelLocation
from autovision.export.onnx_export import export_onnx
from autovision.export.torchscript import export_torchscript
from autovision.preprocess import preprocess_bytes
from autovision.serving import write_local_repository
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn
from tests.support.served import RUN
from tests.support.serving import LABELS, PREPROCESS, encode_image

ARCHITECTURE = ResidualCNNConfig(width=4, stages=2, stem_stride=1)


def write_model_dir(root: Path, model_card: ModelCard) -> ModelLocation:
    """A run in file:// storage under ``root`` as the pipeline writes one, as far as the explainer and
    ``autovision serve`` read it: model.pt, model.onnx, model.json and the local Triton repository."""
    storage = Storage(f"file://{root / 'storage'}")
    location = ModelLocation(storage, f"{RUN.prefix}/{MODEL_DIR}")
    torch.manual_seed(0)
    model = build_residual_cnn(ARCHITECTURE, len(LABELS)).eval()
    example = torch.from_numpy(preprocess_bytes(encode_image("PNG", 0), PREPROCESS))[None]
    with tempfile.TemporaryDirectory() as work:
        files = Path(work)
        export_torchscript(model, example, files / "model" / TORCHSCRIPT_FILE)
        export_onnx(model, example, files / "model" / ONNX_FILE)
        storage.upload_dir(files / "model", location.prefix)
        write_local_repository(files / "repository", files / "model" / ONNX_FILE, LABELS, PREPROCESS)
        storage.upload_dir(files / "repository", f"{RUN.prefix}/{TRITON_LOCAL}")
    card = model_card.model_copy(
        update={
            "architecture": ARCHITECTURE.describe(),
            "labels": LABELS,
            "input_size": PREPROCESS.size,
            "mean": PREPROCESS.mean,
            "std": PREPROCESS.std,
            "artifacts": artifact_uris(storage, RUN, location, multi_label=False),
        }
    )
    storage.write_json(location.key(MODEL_CARD), card.to_json())
    return location
