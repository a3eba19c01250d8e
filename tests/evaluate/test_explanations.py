from __future__ import annotations

import numpy as np
import torch

from autovision.evaluate import evaluate_predictions
from autovision.evaluate.explanations import CORRECT_PER_LABEL, chosen_images, explain_test_images
from autovision.evaluate.predictions import SplitPredictions
from autovision.explain.base import ExplainSettings
from autovision.preprocess import PreprocessConfig
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn
from tests.support.evaluate import SINGLE


def test_the_listed_mistakes_come_first_then_the_best_correct_images_of_each_label() -> None:
    mistakes = evaluate_predictions(SINGLE)["mostConfidentMistakes"]
    # Mistakes: image 2 (a, .5) then 3 (b, .4); correct: image 0 (a), image 1 (b); no image is rightly c.
    assert chosen_images(SINGLE, mistakes) == [(2, "mistake"), (3, "mistake"), (0, "correct"), (1, "correct")]
    assert chosen_images(SINGLE, mistakes[:1])[0] == (2, "mistake")


def test_more_correct_images_than_asked_keeps_the_highest_scores() -> None:
    scores = np.array([[0.6, 0.4], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3]], dtype=np.float32)
    predictions = SplitPredictions.single_label(["a", "b"], ["0", "1", "2", "3"], np.zeros(4, dtype=np.int64), scores)
    assert CORRECT_PER_LABEL == 2
    assert chosen_images(predictions, []) == [(1, "correct"), (2, "correct")]


def test_explaining_the_test_images_records_the_method_and_a_grid_and_an_overlay_each() -> None:
    torch.manual_seed(0)
    architecture = ResidualCNNConfig(width=4, stages=2)
    model = build_residual_cnn(architecture, 3)
    pixels = dict(zip(SINGLE.uris, torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8), strict=True))
    asked: list[list[str]] = []

    def pixels_of(uris: list[str]) -> torch.Tensor:
        asked.append(uris)
        return torch.stack([pixels[uri] for uri in uris])

    mistakes = evaluate_predictions(SINGLE)["mostConfidentMistakes"]
    settings = ExplainSettings("integrated_gradients", steps=4, grid=4)
    explained = explain_test_images(
        model,
        architecture.describe(),
        pixels_of,
        SINGLE,
        mistakes,
        preprocess=PreprocessConfig(size=16),
        settings=settings,
    )
    record = explained.record.to_json()
    assert record["method"] == "integrated_gradients"
    assert record["settings"] == {"method": "integrated_gradients", "steps": 4, "grid": 4}
    assert [(image["uri"], image["kind"], image["label"]) for image in record["images"]] == [
        ("s3://b/2.png", "mistake", "a"),
        ("s3://b/3.png", "mistake", "b"),
        ("s3://b/0.png", "correct", "a"),
        ("s3://b/1.png", "correct", "b"),
    ]
    assert record["images"][0]["score"] == np.float32(0.5)
    assert all(len(image["grid"]) == 4 for image in record["images"])
    assert set(explained.overlays) == set(SINGLE.uris)
    assert asked == [[image["uri"] for image in record["images"]]], "only the explained images are read, once"
    assert all(overlay.startswith("data:image/png;base64,") for overlay in explained.overlays.values())
