"""A finished model directory on disk, as a run leaves it, for commands that read one."""

from __future__ import annotations

import json
from pathlib import Path

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR, TORCHSCRIPT_FILE
from autovision.export.torchscript import export_torchscript
from tests.support.export import digit_images, small_model
from tests.support.tflite import DIGIT_SPEC


def write_digits_run(run: Path, card: ModelCard) -> Path:
    """Write the small digits model's TorchScript and a card for it under ``run/model/``; return the run."""
    model_dir = run / MODEL_DIR
    export_torchscript(small_model(0), digit_images(2), model_dir / TORCHSCRIPT_FILE)
    digits = card.model_copy(update={"input_size": DIGIT_SPEC.size, "labels": list(DIGIT_SPEC.labels)})
    (model_dir / MODEL_CARD).write_text(json.dumps(digits.model_dump(mode="json", by_alias=True)))
    return run
