"""The drift reference written beside a model."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.monitor.reference import DriftReference

SCORES = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
EMBEDDINGS = np.arange(6, dtype=np.float32).reshape(3, 2)


def test_the_reference_keeps_top1_and_embeddings_and_reads_back() -> None:
    reference = DriftReference.of_test_split(["cat", "dog"], SCORES, EMBEDDINGS)

    again = DriftReference.from_npz(reference.to_npz())

    assert again.labels == ["cat", "dog"]
    assert again.predictions().labels == ["cat", "dog", "cat"]
    np.testing.assert_allclose(again.confidences, [0.7, 0.8, 0.6])
    np.testing.assert_array_equal(again.embeddings, EMBEDDINGS)


def test_a_large_test_split_is_subsampled_the_same_way_each_time() -> None:
    scores = np.random.default_rng(0).dirichlet([1, 1], size=50).astype(np.float32)
    embeddings = np.arange(100, dtype=np.float32).reshape(50, 2)

    first = DriftReference.of_test_split(["a", "b"], scores, embeddings, limit=20)

    assert len(first.predicted) == 20
    np.testing.assert_array_equal(
        first.embeddings, DriftReference.of_test_split(["a", "b"], scores, embeddings, 20).embeddings
    )


def test_mismatched_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="3 test scores but 2 embeddings"):
        DriftReference.of_test_split(["cat", "dog"], SCORES, EMBEDDINGS[:2])
