"""The ONNX export."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from autovision.export import onnx_logits
from autovision.export.bundle import ExportedModel
from autovision.train.trainer import predict_logits
from tests.support.export import small_model


@pytest.mark.training
def test_onnx_batch_dimension_is_dynamic(exported: ExportedModel, images: torch.Tensor) -> None:
    graph = onnx.load(str(exported.onnx)).graph
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param, "the batch dimension must be symbolic"
    expected = predict_logits(small_model(0), images)
    for size in (1, 3, 40):
        np.testing.assert_allclose(onnx_logits(exported.onnx, images[:size].numpy()), expected[:size], atol=1e-4)
