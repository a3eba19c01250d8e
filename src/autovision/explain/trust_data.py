"""What the trust checks run on: data whose answer is known, and the small models they explain.

``patch_images`` is the localisation check's dataset: noise images whose label is
decided only by the colour of one small square at a random place (red for label
0, blue for label 1, equally bright), so the evidence for every prediction is
known to the pixel. ``fit`` trains a classifier on in-memory tensors, a few
epochs of Adam: enough for these checks, which need a model that has learned
something, not a good one.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from autovision.data.digits import digits_zip_bytes
from autovision.preprocess import PreprocessConfig, preprocess_batch

# The patch colours (RGB in [0, 1]) by label, and the noise's range around mid-grey.
PATCH_COLOURS = ((0.9, 0.2, 0.2), (0.2, 0.2, 0.9))
NOISE_SPREAD = 0.35


@dataclass(frozen=True)
class PatchImages:
    """Normalised inputs (N, 3, size, size), labels (N) and each image's patch (top, left, side, side)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    boxes: tuple[tuple[int, int, int, int], ...]


def patch_images(count: int, size: int = 64, patch: int = 10, seed: int = 0) -> PatchImages:
    """``count`` noise images with one coloured ``patch`` x ``patch`` square each, placed uniformly at random;
    normalised with mean = std = 0.5, so the baseline (zero) is mid-grey."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.5 + NOISE_SPREAD * (2 * torch.rand(count, 3, size, size, generator=generator) - 1)
    labels = torch.randint(len(PATCH_COLOURS), (count,), generator=generator)
    corners = torch.randint(size - patch + 1, (count, 2), generator=generator)
    colours = torch.tensor(PATCH_COLOURS)
    boxes = []
    for index, (top, left) in enumerate(corners.tolist()):
        images[index, :, top : top + patch, left : left + patch] = colours[labels[index]][:, None, None]
        boxes.append((top, left, patch, patch))
    return PatchImages(inputs=(images - 0.5) / 0.5, labels=labels, boxes=tuple(boxes))


def fit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0) -> nn.Module:
    """``model`` trained with Adam (lr 3e-3, batches of 32) for ``epochs`` on the tensors; returned in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(inputs), generator=generator), 32):
            optimizer.zero_grad()
            functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


def shuffled_digits(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The bundled digits (1,797 images) at ``size`` px with their labels, in an order fixed by ``seed``: data
    where the answer is known, for the deletion check."""
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        names = sorted(archive.namelist())
        inputs = torch.from_numpy(preprocess_batch([archive.read(name) for name in names], PreprocessConfig(size=size)))
    labels = torch.tensor([int(name.split("/")[0].removeprefix("digit_")) for name in names])
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))
    return inputs[order], labels[order]
