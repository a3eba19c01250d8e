from __future__ import annotations

import torch
from torch import nn

from autovision.explain.trust_data import PATCH_COLOURS, fit, patch_images


def test_each_image_holds_its_labels_colour_inside_its_box() -> None:
    data = patch_images(16, size=64, patch=10, seed=3)
    assert data.inputs.shape == (16, 3, 64, 64)
    for image, label, (top, left, height, width) in zip(data.inputs, data.labels, data.boxes, strict=True):
        assert max(top, left) <= 54
        assert height == width == 10
        inside = image[:, top : top + height, left : left + width] * 0.5 + 0.5
        expected = torch.tensor(PATCH_COLOURS[int(label)])[:, None, None].expand_as(inside)
        torch.testing.assert_close(inside, expected)
    assert torch.equal(patch_images(16, seed=3).inputs, patch_images(16, seed=3).inputs)


def test_fit_lowers_the_loss_and_returns_the_model_in_eval_mode() -> None:
    torch.manual_seed(0)
    inputs, labels = torch.randn(64, 4), torch.randint(2, (64,))
    model = nn.Sequential(nn.Linear(4, 2))
    before = nn.functional.cross_entropy(model(inputs), labels)
    fitted = fit(model, inputs, labels, epochs=20)
    assert not fitted.training
    assert nn.functional.cross_entropy(fitted(inputs), labels) < before
