"""Augmentation and mixing of whole batches on the training device (pure tensor functions).

They run on normalised float batches where the model trains, so a GPU never waits
for a CPU data loader; each draws its randomness from torch's generator, which
the trainer reseeds every epoch.

Streamed images (``autovision.train.streaming``) arrive already zoomed and shifted
by a random crop of the stored image, drawn as ``random_affine`` draws its zoom and
shift; for them ``augment(..., cropped=True)`` only rotates.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional


def _uniform(count: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(count, device=device) * (high - low) + low


# The affine transform's ranges at magnitude 1; the stream's crops draw zoom and shift from the same ones.
MAX_ZOOM = 0.25
MAX_SHIFT = 0.15
MAX_ANGLE = math.pi / 12


def random_affine(x: torch.Tensor, magnitude: float, cropped: bool = False) -> torch.Tensor:
    """Per-image zoom (±25%), rotation (±15°) and shift (±15%), scaled by magnitude; empty areas are the mean.

    ``cropped`` images were zoomed and shifted by their crop already: they are only rotated."""
    count, device = x.shape[0], x.device
    angle = _uniform(count, -1.0, 1.0, device) * MAX_ANGLE * magnitude
    if cropped:
        zoom, shift = torch.ones(count, device=device), torch.zeros(2, count, device=device)
    else:
        zoom = 1 + _uniform(count, -1.0, 1.0, device) * MAX_ZOOM * magnitude
        shift = _uniform(2 * count, -1.0, 1.0, device).view(2, count) * MAX_SHIFT * magnitude
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[0]], 1), torch.stack([sin, cos, shift[1]], 1)], 1)
    grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
    return functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def colour_jitter(x: torch.Tensor, magnitude: float) -> torch.Tensor:
    """Per-image contrast (x 1±0.3) and brightness (±0.3 of a standard deviation), scaled by magnitude."""
    count, device = x.shape[0], x.device
    contrast = (1 + _uniform(count, -1.0, 1.0, device) * 0.3 * magnitude).view(count, 1, 1, 1)
    brightness = (_uniform(count, -1.0, 1.0, device) * 0.3 * magnitude).view(count, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean + brightness


def random_flip(x: torch.Tensor) -> torch.Tensor:
    """Mirror a random half of the images left to right."""
    flip = (torch.rand(x.shape[0], device=x.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def augment(x: torch.Tensor, magnitude: float, flip: bool, cropped: bool = False) -> torch.Tensor:
    """A trial's augmentation of one normalised batch: affine and colour at ``magnitude`` (0: off), then flips;
    ``cropped``: the batch was randomly cropped already (streamed), so the affine only rotates."""
    if magnitude > 0:
        x = colour_jitter(random_affine(x, magnitude, cropped), magnitude)
    return random_flip(x) if flip else x


def mix(x: torch.Tensor, targets: torch.Tensor, mixup: float, cutmix: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (one of those enabled, chosen per batch) of images and their target rows.

    ``mixup`` and ``cutmix`` are the Beta(alpha, alpha) parameters of the two mixes; 0 turns one off.
    """
    enabled = [(kind, alpha) for kind, alpha in (("mixup", mixup), ("cutmix", cutmix)) if alpha > 0]
    if not enabled or len(x) < 2:
        return x, targets
    kind, alpha = enabled[int(torch.randint(len(enabled), (1,)))]
    share = float(torch.distributions.Beta(alpha, alpha).sample())
    partner = torch.randperm(len(x), device=x.device)
    if kind == "mixup":
        mixed = share * x + (1 - share) * x[partner]
    else:
        mixed, share = _cutmix(x, partner, share)
    return mixed, share * targets + (1 - share) * targets[partner]


def _cutmix(x: torch.Tensor, partner: torch.Tensor, share: float) -> tuple[torch.Tensor, float]:
    """Paste a box covering about 1 - share of each image from its partner; the share actually kept."""
    height, width = x.shape[-2:]
    cut_h, cut_w = int(height * math.sqrt(1 - share)), int(width * math.sqrt(1 - share))
    centre_y, centre_x = int(torch.randint(height, (1,))), int(torch.randint(width, (1,)))
    top, bottom = max(centre_y - cut_h // 2, 0), min(centre_y + cut_h // 2, height)
    left, right = max(centre_x - cut_w // 2, 0), min(centre_x + cut_w // 2, width)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[partner, :, top:bottom, left:right]
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)
