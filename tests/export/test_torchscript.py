"""The TorchScript export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.export.torchscript import (
    embedded_outputs,
    export_torchscript,
    load_torchscript,
    torchscript_logits,
    torchscript_outputs,
)
from autovision.train.families import family_of
from autovision.train.families.layers import embedded_split
from autovision.train.trainer import predict_logits
from tests.support.export import ARCHITECTURE, small_model


@pytest.mark.training
def test_torchscript_runs_any_batch_with_both_outputs(tmp_path: Path, images: torch.Tensor) -> None:
    model = small_model(2)
    embedded = family_of(ARCHITECTURE).with_embedding(model)
    path = export_torchscript(embedded, images[:2], tmp_path / "model.pt")

    np.testing.assert_array_equal(torchscript_logits(path, images[:7]), predict_logits(model, images[:7]))
    embeddings = torchscript_outputs(path, images[:7])[EMBEDDING_OUTPUT]
    np.testing.assert_array_equal(embeddings, embedded_outputs(embedded, images[:7])[EMBEDDING_OUTPUT])
    # The explainer splits the archive where the embedding is taken, the layer Grad-CAM reads.
    split = embedded_split(load_torchscript(path))
    assert split is not None
    assert embedded_split(model) is None
    features, head = split
    with torch.no_grad():
        np.testing.assert_array_equal(head(features(images[:7])).numpy(), predict_logits(model, images[:7]))
