"""The three trust checks, per method, with generous thresholds; and explainers that fail them.

Measured figures on larger data are in docs/benchmarks.md (benchmarks/explain_trust.py).
"""

from __future__ import annotations

import pytest
import torch

from autovision.explain.base import METHODS, ExplainedModel, ExplainSettings, MethodName
from autovision.explain.methods import attribute, explained_model
from autovision.explain.trust import (
    cascading_randomisation,
    deletion_curve,
    fully_randomised,
    mass_inside,
    spearman,
)
from autovision.explain.trust_data import PatchImages
from tests.explain.conftest import PATCH_TRAIN, Trained

# Integrated gradients' steps in these tests: enough for the checks, cheap on CPU.
STEPS = 8


def maps_of(trained: Trained, method: MethodName, model: torch.nn.Module | None = None) -> torch.Tensor:
    explained = explained_model(model or trained.model, trained.architecture)
    classes = int(explained(trained.inputs[:1]).shape[1])
    return attribute(explained, trained.inputs, trained.labels, ExplainSettings(method, STEPS), num_classes=classes)


def mean_rank_correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    return sum(spearman(a, b) for a, b in zip(first, second, strict=True)) / len(first)


def input_magnitude(trained: Trained) -> torch.Tensor:
    """A broken explainer: it shows the input's own contrast, whatever the model."""
    return trained.inputs.abs().sum(dim=1)


@pytest.mark.training
@pytest.mark.parametrize("method", METHODS)
def test_an_explanation_changes_when_the_model_is_randomised(patch_model: Trained, method: MethodName) -> None:
    trained = maps_of(patch_model, method)
    randomised = maps_of(patch_model, method, fully_randomised(patch_model.model))
    assert mean_rank_correlation(trained, randomised) < 0.3


@pytest.mark.training
def test_an_explainer_blind_to_the_model_fails_the_randomisation_check(patch_model: Trained) -> None:
    blind = input_magnitude(patch_model)
    assert mean_rank_correlation(blind, blind) == pytest.approx(1.0)


def test_the_cascade_randomises_from_the_output_down_and_leaves_the_model_alone() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    before = [parameter.clone() for parameter in model.parameters()]
    names = [name for name, _ in cascading_randomisation(model)]
    assert names == ["2", "0"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not torch.equal(fully_randomised(model).get_parameter("0.weight"), model.get_parameter("0.weight"))


@pytest.mark.training
@pytest.mark.parametrize("method", METHODS)
def test_the_attribution_mass_falls_on_the_patch_that_decides_the_label(
    patch_model: Trained, patches: PatchImages, method: MethodName
) -> None:
    maps = maps_of(patch_model, method)
    boxes = patches.boxes[PATCH_TRAIN:]
    concentration = sum(mass_inside(m, box) for m, box in zip(maps, boxes, strict=True)) / len(boxes)
    assert concentration >= 2.0
    uniform = sum(mass_inside(torch.ones_like(m), box) for m, box in zip(maps, boxes, strict=True)) / len(boxes)
    assert uniform == pytest.approx(1.0)


@pytest.mark.training
@pytest.mark.parametrize("method", METHODS)
def test_deleting_the_most_attributed_pixels_first_lowers_accuracy_faster_than_at_random(
    digits_model: Trained, method: MethodName
) -> None:
    model = explained_model(digits_model.model, digits_model.architecture)
    curve = deletion_curve(model, digits_model.inputs, digits_model.labels, maps_of(digits_model, method))
    assert curve.attributed_first[0] == curve.random_order[0] >= 0.6
    assert curve.attributed_area < 0.9 * curve.random_area


@pytest.mark.training
def test_an_explainer_that_points_at_random_pixels_fails_the_deletion_check(digits_model: Trained) -> None:
    model = ExplainedModel(digits_model.model, torch.nn.Identity())
    noise = torch.rand(digits_model.inputs.shape[0], 16, 16, generator=torch.Generator().manual_seed(1))
    curve = deletion_curve(model, digits_model.inputs, digits_model.labels, noise)
    assert not curve.attributed_area < 0.9 * curve.random_area
