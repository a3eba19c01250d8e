from __future__ import annotations

import torch
from torch import nn

from autovision.explain.base import Deadline, ExplainedModel
from autovision.explain.grad_cam import grad_cam


def test_grad_cam_weighs_the_feature_maps_by_the_target_scores_gradient() -> None:
    # Two feature channels; label 0 reads channel 0, label 1 reads channel 1 (pooled, linear).
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    features = torch.zeros(1, 2, 4, 4)
    features[0, 0, 0, 0] = 1.0  # channel 0 lights the top-left corner
    features[0, 1, 3, 3] = 1.0  # channel 1 the bottom-right one
    model = ExplainedModel(lambda x: features, head)
    inputs = torch.zeros(1, 3, 8, 8)
    for label, (row, column) in ((0, (0, 0)), (1, (7, 7))):
        cam = grad_cam(model, inputs, torch.tensor([label]), Deadline())
        assert cam.shape == (1, 8, 8)
        assert cam.min() >= 0
        assert divmod(int(cam[0].argmax()), 8) == (row, column)


def test_grad_cam_keeps_no_graph_through_the_features() -> None:
    layer = nn.Conv2d(3, 2, 1)
    model = ExplainedModel(layer, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    grad_cam(model, torch.rand(2, 3, 4, 4), torch.tensor([0, 1]), Deadline())
    assert layer.weight.grad is None
