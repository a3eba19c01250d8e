"""The drift statistics, on samples whose distributions are known."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.monitor.drift import (
    DriftSettings,
    DriftStatus,
    Predictions,
    confidence_test,
    detect_drift,
    kolmogorov_p_value,
)

FAST = DriftSettings(permutations=200)


def sample(size: int, seed: int, *, shift: float = 0.0, labels: str = "abc", dims: int = 16) -> Predictions:
    """Top-1 scores from a Beta, labels drawn uniformly from ``labels``, Gaussian embeddings moved by ``shift``."""
    rng = np.random.default_rng(seed)
    return Predictions(
        np.clip(rng.beta(8, 2, size) - shift, 0, 1).astype(np.float32),
        [str(label) for label in rng.choice(list(labels), size)],
        (rng.normal(size=(size, dims)) + shift).astype(np.float32),
    )


def test_the_same_distribution_is_no_drift() -> None:
    result = detect_drift(sample(300, 0), sample(200, 1), FAST)

    assert result.status is DriftStatus.NO_DRIFT
    assert [test.aspect for test in result.tests] == ["confidence", "labels", "embedding"]
    assert result.threshold == pytest.approx(0.05 / 3)
    assert not any(test.drift for test in result.tests)


@pytest.mark.parametrize(
    ("shifted", "aspect"), [(sample(200, 1, shift=0.15), "confidence"), (sample(200, 1, labels="aab"), "labels")]
)
def test_each_aspect_detects_its_own_shift(shifted: Predictions, aspect: str) -> None:
    unmoved = sample(200, 1).embeddings
    result = detect_drift(sample(300, 0), Predictions(shifted.confidences, shifted.labels, unmoved), FAST)

    assert result.status is DriftStatus.DRIFT
    assert [test.aspect for test in result.tests if test.drift] == [aspect]


def test_the_embedding_test_finds_a_shift_the_outputs_do_not_show() -> None:
    reference, window = sample(300, 0), sample(200, 1)
    moved = Predictions(window.confidences, window.labels, window.embeddings + np.float32(0.5))

    result = detect_drift(reference, moved, FAST)

    assert [test.aspect for test in result.tests if test.drift] == ["embedding"]
    assert result.tests[2].p_value == pytest.approx(1 / 201)


def test_a_window_without_traffic_is_unknown_not_no_drift() -> None:
    empty = Predictions(np.zeros(0, dtype=np.float32), [])

    assert detect_drift(sample(300, 0), empty).status is DriftStatus.UNKNOWN
    assert detect_drift(sample(300, 0), empty).reason == "no logged predictions in the window"
    few = detect_drift(sample(300, 0), sample(29, 1))
    assert few.status is DriftStatus.UNKNOWN
    assert "29 logged predictions, fewer than the 30" in few.reason


def test_without_logged_embeddings_two_tests_decide() -> None:
    window = sample(200, 1)

    result = detect_drift(sample(300, 0), Predictions(window.confidences, window.labels), FAST)

    assert [test.aspect for test in result.tests] == ["confidence", "labels"]
    assert "embeddings not compared" in result.reason


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        DriftSettings(alpha=1.5)
    with pytest.raises(ValueError, match="3 confidences but 2 labels"):
        Predictions(np.zeros(3, dtype=np.float32), ["a", "b"])
    with pytest.raises(ValueError, match="another model"):
        detect_drift(sample(300, 0), sample(200, 1, dims=8), FAST)


def test_kolmogorov_smirnov_matches_its_textbook_values() -> None:
    # D = 0.5 between {1..4} and {3..6}; the asymptotic p-value, lambda = (sqrt(2) + 0.12 + 0.11/sqrt(2)) * 0.5.
    statistic, p_value = confidence_test(np.arange(1, 5, dtype=np.float32), np.arange(3, 7, dtype=np.float32))
    assert statistic == 0.5
    assert p_value == pytest.approx(kolmogorov_p_value(0.5, 4, 4))
    assert kolmogorov_p_value(0.0, 100, 100) == 1.0
    # Q_KS(1.36) = 0.049, the classical 5 % point.
    assert kolmogorov_p_value(1.36 / (np.sqrt(5000) + 0.12 + 0.11 / np.sqrt(5000)), 10_000, 10_000) == pytest.approx(
        0.0494, abs=1e-3
    )
