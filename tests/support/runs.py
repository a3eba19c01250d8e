"""Finished runs, as a run leaves them, for commands that read one: a model directory, or a base model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from autovision.contract.files import FinalFit, ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR, TORCHSCRIPT_FILE, model_card_key, trial_checkpoint_key
from autovision.export.torchscript import export_torchscript
from autovision.storage import Storage
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.models import build_model
from autovision.train.trainer import TrainConfig
from tests.support.export import digit_images, small_model
from tests.support.tflite import DIGIT_SPEC


def write_digits_run(run: Path, card: ModelCard) -> Path:
    """Write the small digits model's TorchScript and a card for it under ``run/model/``; return the run."""
    model_dir = run / MODEL_DIR
    export_torchscript(small_model(0), digit_images(2), model_dir / TORCHSCRIPT_FILE)
    digits = card.model_copy(update={"input_size": DIGIT_SPEC.size, "labels": list(DIGIT_SPEC.labels)})
    (model_dir / MODEL_CARD).write_text(json.dumps(digits.model_dump(mode="json", by_alias=True)))
    return run


def write_finished_run(storage: Storage, prefix: str, card: ModelCard, weights: dict[str, torch.Tensor]) -> ModelCard:
    """A finished run as a base model needs it: the card (the tiny CNN's, on ``card``'s labels and task) and the
    chosen trial's checkpoint holding ``weights``; no exports. Returns the card written."""
    architecture = ResidualCNNConfig(width=4, stages=1)
    training = TrainConfig(epochs=3, architecture=architecture)
    written = card.model_copy(
        update={
            "architecture": architecture.describe(),
            "training": training.describe(),
            "input_size": 8,
            "final_fit": FinalFit(trial=0, retrained=False, seconds=1.0, checkpoint="trials/0/checkpoint.pt"),
        }
    )
    buffer = io.BytesIO()
    torch.save({"best_model": weights, "epoch": 3}, buffer)
    storage.write_bytes(trial_checkpoint_key(prefix, 0), buffer.getvalue())
    storage.write_json(model_card_key(prefix), written.to_json())
    return written


def tiny_cnn_weights(num_classes: int) -> dict[str, torch.Tensor]:
    """The weights of the architecture ``write_finished_run`` describes, freshly initialised."""
    return build_model(ResidualCNNConfig(width=4, stages=1), num_classes).state_dict()
