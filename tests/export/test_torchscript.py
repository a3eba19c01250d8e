"""The TorchScript export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.export.torchscript import export_torchscript, torchscript_logits
from autovision.train.trainer import predict_logits
from tests.support.export import small_model


@pytest.mark.training
def test_torchscript_runs_any_batch(tmp_path: Path, images: torch.Tensor) -> None:
    model = small_model(2)
    path = export_torchscript(model, images[:2], tmp_path / "model.pt")

    np.testing.assert_array_equal(torchscript_logits(path, images[:7]), predict_logits(model, images[:7]))
