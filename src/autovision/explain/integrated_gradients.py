"""Integrated gradients (Sundararajan et al., 2017), from the mean image (zero after normalisation).

The gradient of the target score is averaged at ``steps`` points along the
straight path from the baseline to the input (midpoint rule), multiplied by
the input minus the baseline and summed over channels; the map keeps the
positive part, the evidence for the label (the absolute value would keep the
input's own edges however the model was trained, which the model-randomisation
check rightly fails).
The steps run in chunks, so memory stays bounded and the deadline is checked
between them.
"""

from __future__ import annotations

import torch
from torch.nn import functional

from autovision.explain.base import Deadline, ExplainedModel

# Path points evaluated in one forward/backward pass, per input image.
STEP_CHUNK = 16


def integrated_gradients(
    model: ExplainedModel, inputs: torch.Tensor, targets: torch.Tensor, deadline: Deadline, steps: int
) -> torch.Tensor:
    """Integrated-gradients maps (N, H, W) for ``targets`` along ``steps`` points of the path."""
    baseline = torch.zeros_like(inputs)
    difference = inputs - baseline
    alphas = (torch.arange(steps, dtype=inputs.dtype) + 0.5) / steps
    total = torch.zeros_like(inputs)
    for chunk in torch.split(alphas, STEP_CHUNK):
        deadline.check()
        # (chunk, N, C, H, W) flattened to one batch: every image at every alpha of the chunk.
        points = (baseline[None] + chunk[:, None, None, None, None] * difference[None]).flatten(0, 1)
        points.requires_grad_(True)
        scores = model(points).gather(1, targets.repeat(len(chunk))[:, None]).sum()
        (gradients,) = torch.autograd.grad(scores, points)
        total += gradients.view(len(chunk), *inputs.shape).sum(dim=0)
    deadline.check()
    return functional.relu((difference * total / steps).sum(dim=1))
