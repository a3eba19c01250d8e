from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from autovision.explain.base import Deadline, ExplainedModel, ExplainTimeoutError
from autovision.explain.integrated_gradients import integrated_gradients


def linear_model() -> ExplainedModel:
    """A linear classifier with positive weights."""
    torch.manual_seed(0)
    layer = nn.Linear(3 * 4 * 4, 2)
    with torch.no_grad():
        layer.weight.abs_()
    return ExplainedModel(nn.Flatten(), layer)


def test_attributions_add_up_to_the_score_above_the_baseline() -> None:
    # Completeness: for a linear model with positive weights and inputs, every attribution is positive and
    # their sum is exactly score(input) - score(baseline).
    model = linear_model()
    inputs = torch.rand(2, 3, 4, 4)
    targets = torch.tensor([0, 1])
    maps = integrated_gradients(model, inputs, targets, Deadline(), steps=4)
    assert maps.shape == (2, 4, 4)
    expected = (model(inputs) - model(torch.zeros_like(inputs))).gather(1, targets[:, None])[:, 0]
    torch.testing.assert_close(maps.sum(dim=(1, 2)), expected)


def test_a_deadline_stops_the_steps() -> None:
    model = linear_model()
    with pytest.raises(ExplainTimeoutError):
        integrated_gradients(model, torch.rand(1, 3, 4, 4), torch.tensor([0]), Deadline(time.monotonic() - 1), 64)
