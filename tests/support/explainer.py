"""A finished model directory the explainer can serve: a tiny residual CNN's model.pt, model.onnx and model.json."""

from __future__ import annotations

from pathlib import Path

import torch

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, ONNX_FILE, TORCHSCRIPT_FILE
from autovision.export.layout import ModelLocation, locate_model
from autovision.export.onnx_export import export_onnx
from autovision.export.torchscript import export_torchscript
from autovision.preprocess import preprocess_bytes
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn
from tests.support.serving import LABELS, PREPROCESS, encode_image

ARCHITECTURE = ResidualCNNConfig(width=4, stages=2, stem_stride=1)


def write_model_dir(root: Path, model_card: ModelCard, onnx: bool = True) -> ModelLocation:
    """A model directory as the pipeline writes one, as far as the explainer (and an ONNX check) reads it."""
    torch.manual_seed(0)
    model = build_residual_cnn(ARCHITECTURE, len(LABELS)).eval()
    example = torch.from_numpy(preprocess_bytes(encode_image("PNG", 0), PREPROCESS))[None]
    export_torchscript(model, example, root / "model" / TORCHSCRIPT_FILE)
    if onnx:
        export_onnx(model, example, root / "model" / ONNX_FILE)
    card = model_card.model_copy(
        update={
            "architecture": ARCHITECTURE.describe(),
            "labels": LABELS,
            "input_size": PREPROCESS.size,
            "mean": PREPROCESS.mean,
            "std": PREPROCESS.std,
        }
    )
    Storage(f"file://{root}").write_json(f"model/{MODEL_CARD}", card.to_json())
    return locate_model(str(root))
