"""Finished runs, as a run leaves them, for commands that read one: a model directory, or a base model."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from autovision.contract.files import DatasetVersionRef, FinalFit, ModelCard
from autovision.contract.keys import model_card_key, trial_checkpoint_key
from autovision.data.importer import ImportResult, import_dataset
from autovision.storage import Storage
from autovision.train.families.base import ArchitectureConfig
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.models import build_model
from autovision.train.trainer import TrainConfig
from tests.support.export import ARCHITECTURE, small_model
from tests.support.search import digits_subset_zip
from tests.support.tflite import DIGIT_SPEC

TINY_CNN = ResidualCNNConfig(width=4, stages=1)


def write_digits_run(run: Path, card: ModelCard) -> Path:
    """A finished run of the small digits model at ``run`` (``write_finished_run``), on the ten digit labels."""
    digits = card.model_copy(update={"labels": list(DIGIT_SPEC.labels)})
    weights = small_model(0).state_dict()
    write_finished_run(Storage(str(run)), "", digits, weights, architecture=ARCHITECTURE, size=DIGIT_SPEC.size)
    return run


def import_digits(storage: Storage, workdir: Path, card: ModelCard) -> tuple[ImportResult, ModelCard]:
    """Ten digits of each class imported into ``storage`` (split into train, validation and test), and ``card``
    naming that version as its dataset."""
    imported = import_dataset(str(digits_subset_zip(workdir / "digits.zip", per_class=10)), "digits", storage)
    return imported, card.model_copy(update={"dataset": DatasetVersionRef(name="digits", version=imported.version)})


def write_finished_run(
    storage: Storage,
    prefix: str,
    card: ModelCard,
    weights: dict[str, torch.Tensor],
    *,
    architecture: ArchitectureConfig = TINY_CNN,
    size: int = 8,
) -> ModelCard:
    """A finished run as a base model or ``autovision export`` needs it: the card (``architecture``'s, on
    ``card``'s labels and task) and the chosen trial's checkpoint holding ``weights``; no exports. Returns the card
    written."""
    training = TrainConfig(epochs=3, architecture=architecture)
    written = card.model_copy(
        update={
            "architecture": architecture.describe(),
            "training": training.describe(),
            "input_size": size,
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
    return build_model(TINY_CNN, num_classes).state_dict()
