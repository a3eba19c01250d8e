"""The checks that show an explanation can be trusted (pure metrics over models and maps).

- Model randomisation (Adebayo et al., 2018, "Sanity Checks for Saliency Maps"):
  an explanation must change when the model's weights are re-initialised from the
  top layer down; ``spearman`` compares the two maps' pixel ranks.
- Localisation: where the label is decided by a known box, the share of
  attribution mass inside it, relative to the box's share of the image.
- Deletion: replacing the most attributed pixels first by the baseline (the mean
  image) must lower accuracy faster than replacing pixels in random order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

FloatArray = npt.NDArray[np.float64]


def _ranks(values: FloatArray) -> FloatArray:
    """Ranks of ``values`` from 0, ties given their mean rank (as Spearman's coefficient needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    averaged: FloatArray = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    return averaged


def spearman(first: torch.Tensor, second: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps' pixels (0 where either map is constant)."""
    a, b = _ranks(first.flatten().double().numpy()), _ranks(second.flatten().double().numpy())
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / scale) if scale > 0 else 0.0


def cascading_randomisation(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Copies of ``model`` with its layers re-initialised cumulatively from the output down (Adebayo et al.'s
    cascade), each named by the last layer randomised; the last copy has no trained weight left."""
    randomised = copy.deepcopy(model).eval()
    layers = [(name, module) for name, module in randomised.named_modules() if hasattr(module, "reset_parameters")]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        for name, module in reversed(layers):
            module.reset_parameters()
            yield name, randomised
    finally:
        torch.random.set_rng_state(generator_state)


def fully_randomised(model: nn.Module) -> nn.Module:
    """``model`` with every layer re-initialised: the end of the cascade."""
    last = model
    for _, randomised in cascading_randomisation(model):
        last = randomised
    return last


def mass_inside(attribution: torch.Tensor, box: tuple[int, int, int, int]) -> float:
    """The share of a map's mass inside ``box`` (top, left, height, width) divided by the box's share of the
    image: 1 is no better than uniform, and the localisation check asks for at least 2."""
    top, left, height, width = box
    total = float(attribution.sum())
    if total <= 0:
        return 0.0
    inside = float(attribution[top : top + height, left : left + width].sum())
    share = height * width / attribution.numel()
    return inside / total / share


@dataclass(frozen=True)
class DeletionCurve:
    """Accuracy after replacing a growing fraction of pixels by the baseline, in two orders."""

    fractions: tuple[float, ...]
    attributed_first: tuple[float, ...]
    random_order: tuple[float, ...]

    @staticmethod
    def area(accuracies: Sequence[float], fractions: Sequence[float]) -> float:
        """The area under an accuracy curve (trapezoids): lower is a faster fall."""
        heights = np.asarray(accuracies, dtype=np.float64)
        return float(((heights[1:] + heights[:-1]) / 2 * np.diff(np.asarray(fractions, dtype=np.float64))).sum())

    @property
    def attributed_area(self) -> float:
        """Area under the most-attributed-first curve."""
        return self.area(self.attributed_first, self.fractions)

    @property
    def random_area(self) -> float:
        """Area under the random-order curve."""
        return self.area(self.random_order, self.fractions)


def _accuracy_after_deletion(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    order: torch.Tensor,
    fraction: float,
) -> float:
    """Accuracy once the first ``fraction`` of each image's pixels in ``order`` (N, H*W) are zeroed."""
    count = round(fraction * order.shape[1])
    keep = torch.ones(order.shape, dtype=inputs.dtype)
    keep.scatter_(1, order[:, :count], 0.0)
    with torch.no_grad():
        predicted = model(inputs * keep.view(inputs.shape[0], 1, *inputs.shape[2:])).argmax(dim=1)
    return float((predicted == labels).double().mean())


def deletion_curve(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    attributions: torch.Tensor,
    *,
    fractions: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    seed: int = 0,
) -> DeletionCurve:
    """Accuracies after deleting (setting to the normalised baseline, zero) the most attributed pixels first,
    and the same fractions in a random order."""
    flat = attributions.flatten(1)
    most_first = flat.argsort(dim=1, descending=True, stable=True)
    generator = torch.Generator().manual_seed(seed)
    random_order = torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(flat.shape[0])])
    return DeletionCurve(
        fractions=tuple(fractions),
        attributed_first=tuple(
            _accuracy_after_deletion(model, inputs, labels, most_first, fraction) for fraction in fractions
        ),
        random_order=tuple(
            _accuracy_after_deletion(model, inputs, labels, random_order, fraction) for fraction in fractions
        ),
    )
