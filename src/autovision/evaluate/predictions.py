"""The test split's scores, saved next to the model so evaluation can be redone without retraining.

``autovision evaluate --threshold 0.7`` and the pipeline's own test both read this
file, so every number in ``evaluation.json`` can be recomputed from it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autovision.preprocess import FloatArray

BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SplitPredictions:
    """Scores of every image of one split, with its ground truth.

    ``truth[i, j]`` says whether label ``j`` is correct for image ``i``; ``scores``
    holds softmax probabilities (single-label) or sigmoid scores (multi-label).
    """

    labels: list[str]
    uris: list[str]
    truth: BoolArray
    scores: FloatArray
    multi_label: bool = False

    def __post_init__(self) -> None:
        expected = (len(self.uris), len(self.labels))
        if self.truth.shape != expected or self.scores.shape != expected:
            raise ValueError(
                f"truth {self.truth.shape} and scores {self.scores.shape} must both be (images, labels) = {expected}"
            )
        if not self.multi_label and not (self.truth.sum(axis=1) == 1).all():
            raise ValueError("single-label predictions need exactly one true label per image")

    @classmethod
    def single_label(
        cls, labels: list[str], uris: list[str], targets: IndexArray, scores: FloatArray
    ) -> SplitPredictions:
        """Build from class indices, the form the trainer holds test targets in."""
        truth = np.zeros((len(targets), len(labels)), dtype=np.bool_)
        truth[np.arange(len(targets)), targets] = True
        return cls(labels=labels, uris=uris, truth=truth, scores=scores.astype(np.float32))

    @property
    def top1(self) -> IndexArray:
        """Index of the highest-scoring label of each image."""
        return np.asarray(self.scores.argmax(axis=1), dtype=np.int64)

    def to_npz(self) -> bytes:
        """Serialise to a compressed .npz that loads without pickle."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            labels=np.asarray(self.labels, dtype=np.str_),
            uris=np.asarray(self.uris, dtype=np.str_),
            truth=self.truth,
            scores=self.scores,
            multi_label=np.asarray(self.multi_label),
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> SplitPredictions:
        """Load what ``to_npz`` wrote; pickled objects are refused."""
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            return cls(
                labels=[str(label) for label in saved["labels"]],
                uris=[str(uri) for uri in saved["uris"]],
                truth=saved["truth"].astype(np.bool_),
                scores=saved["scores"].astype(np.float32),
                multi_label=bool(saved["multi_label"]),
            )
