"""Grad-CAM (Selvaraju et al., 2017) on the last convolutional stage: one forward and one backward pass.

The feature maps are weighted by the spatial mean of the target score's gradient
with respect to them, summed over channels and rectified, then upsampled
bilinearly to the input's size.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from autovision.explain.base import Deadline, ExplainedModel


def grad_cam(model: ExplainedModel, inputs: torch.Tensor, targets: torch.Tensor, deadline: Deadline) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) for ``targets``; the features' own graph is not kept, only the head's."""
    with torch.no_grad():
        maps = model.features(inputs)
    maps.requires_grad_(True)
    scores = model.head(maps).gather(1, targets[:, None]).sum()
    (gradients,) = torch.autograd.grad(scores, maps)
    deadline.check()
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    cam = functional.relu((weights * maps.detach()).sum(dim=1, keepdim=True))
    upsampled = functional.interpolate(cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
    return upsampled[:, 0]
