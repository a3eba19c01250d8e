"""Benchmark: the three trust checks of the explanations, per method, on more data than the tests use.

    .venv/bin/python benchmarks/explain_trust.py [--steps 32] [--threads 1]

- model randomisation (Adebayo et al., 2018): the mean Spearman rank correlation
  between each method's maps of the trained model and of the same model with its
  layers re-initialised from the output down, after each layer of the cascade's
  first three and after the whole cascade;
- localisation: a residual CNN trained on 1,024 generated 64 px images whose label
  is decided only by a 10 px square at a random place (Grad-CAM's last stage is
  8x8); on 256 held-out images, the attribution mass inside the square divided by
  the square's share of the image (1 is chance, the tests ask for 2);
- deletion: on the 297 held-out bundled digits (16 px), accuracy after replacing
  5-50% of the pixels by the mean image, most attributed first or in random order,
  and the area under each curve.

Prints one JSON line; docs/benchmarks.md records the figures with the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from _common import cpu_model

from autovision.explain.base import METHODS, ExplainSettings
from autovision.explain.methods import attribute, explained_model
from autovision.explain.trust import cascading_randomisation, deletion_curve, mass_inside, spearman
from autovision.explain.trust_data import fit, patch_images, shuffled_digits
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn

PATCH_TRAIN, PATCH_TEST = 1024, 256
DIGITS_TRAIN = 1500
CASCADE_REPORTED = 3


def _maps(
    model: torch.nn.Module,
    architecture: dict[str, object],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    settings: ExplainSettings,
) -> torch.Tensor:
    split = explained_model(model, architecture)
    classes = int(split(inputs[:1]).shape[1])
    return attribute(split, inputs, labels, settings, num_classes=classes)


def _mean_correlation(first: torch.Tensor, second: torch.Tensor) -> float:
    return round(sum(spearman(a, b) for a, b in zip(first, second, strict=True)) / len(first), 3)


def _accuracy(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return round(float((model(inputs).argmax(1) == labels).double().mean()), 3)


def patch_checks(steps: int) -> dict[str, Any]:
    """Randomisation and localisation on the generated patch data."""
    data = patch_images(PATCH_TRAIN + PATCH_TEST, size=64, patch=10, seed=0)
    architecture = ResidualCNNConfig(width=8, stages=3, stem_stride=2)
    torch.manual_seed(0)
    began = time.perf_counter()
    model = fit(build_residual_cnn(architecture, 2), data.inputs[:PATCH_TRAIN], data.labels[:PATCH_TRAIN], 5)
    trained_seconds = time.perf_counter() - began
    inputs, labels, boxes = data.inputs[PATCH_TRAIN:], data.labels[PATCH_TRAIN:], data.boxes[PATCH_TRAIN:]
    described = architecture.describe()
    result: dict[str, Any] = {"accuracy": _accuracy(model, inputs, labels), "trainSeconds": round(trained_seconds, 1)}
    for method in METHODS:
        settings = ExplainSettings(method, steps)
        began = time.perf_counter()
        maps = _maps(model, described, inputs, labels, settings)
        seconds_per_image = (time.perf_counter() - began) / len(inputs)
        cascade = []
        layers = sum(1 for module in model.modules() if hasattr(module, "reset_parameters"))
        for index, (layer, randomised) in enumerate(cascading_randomisation(model)):
            if index < CASCADE_REPORTED or index == layers - 1:
                correlation = _mean_correlation(maps, _maps(randomised, described, inputs, labels, settings))
                cascade.append({"randomisedDownTo": layer, "spearman": correlation})
        concentration = sum(mass_inside(m, box) for m, box in zip(maps, boxes, strict=True)) / len(boxes)
        result[method] = {
            "settings": settings.describe(),
            "msPerImage": round(1000 * seconds_per_image, 2),
            "cascade": cascade,
            "massInPatchOverShare": round(concentration, 2),
        }
    return result


def deletion_checks(steps: int) -> dict[str, Any]:
    """Deletion curves on the bundled digits."""
    inputs, labels = shuffled_digits(16)
    architecture = ResidualCNNConfig(width=8, stages=2)
    torch.manual_seed(0)
    model = fit(build_residual_cnn(architecture, 10), inputs[:DIGITS_TRAIN], labels[:DIGITS_TRAIN], 10)
    test_inputs, test_labels = inputs[DIGITS_TRAIN:], labels[DIGITS_TRAIN:]
    result: dict[str, Any] = {"accuracy": _accuracy(model, test_inputs, test_labels)}
    split = explained_model(model, architecture.describe())
    for method in METHODS:
        maps = _maps(model, architecture.describe(), test_inputs, test_labels, ExplainSettings(method, steps))
        curve = deletion_curve(split, test_inputs, test_labels, maps)
        result[method] = {
            "fractions": curve.fractions,
            "attributedFirst": [round(value, 3) for value in curve.attributed_first],
            "randomOrder": [round(value, 3) for value in curve.random_order],
            "areaAttributedFirst": round(curve.attributed_area, 4),
            "areaRandomOrder": round(curve.random_area, 4),
        }
    return result


def main() -> None:
    """Run the three checks and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=32, help="integrated gradients' steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a shared machine)")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    began = time.perf_counter()
    report = {
        "machine": cpu_model(),
        "threads": arguments.threads,
        "patches": patch_checks(arguments.steps),
        "digits": deletion_checks(arguments.steps),
    }
    report["seconds"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
