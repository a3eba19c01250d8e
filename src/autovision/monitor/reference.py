"""The drift reference: what the served model answered on its own test split (pure: bytes in and out).

Written once, at export time, beside the model (``DRIFT_REFERENCE_FILE`` in the
model directory), rather than recomputed by each check: a check then needs
neither torch, ONNX Runtime nor the dataset, only storage and NumPy, so the
operator's CronJob runs in the small core image and costs milliseconds; and the
reference is fixed with the model, whatever later happens to the dataset. The
embeddings are the fp32 ONNX model's, the file Triton serves.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from autovision.monitor.drift import FloatArray, Predictions

IndexArray = npt.NDArray[np.int64]
# Test images kept: enough for every test's power, small enough to read in a moment (1000 x 1280 floats = 5 MB).
MAX_REFERENCE_IMAGES = 1000


@dataclass(frozen=True)
class DriftReference:
    """Per test image: the top-1 label (an index into ``labels``), its score and the embedding."""

    labels: list[str]
    predicted: IndexArray
    confidences: FloatArray
    embeddings: FloatArray

    def __post_init__(self) -> None:
        rows = {len(self.predicted), len(self.confidences), len(self.embeddings)}
        if len(rows) != 1:
            raise ValueError(f"a drift reference needs one row per image in every array, has {sorted(rows)}")

    @classmethod
    def of_test_split(
        cls, labels: list[str], scores: FloatArray, embeddings: FloatArray, limit: int = MAX_REFERENCE_IMAGES
    ) -> DriftReference:
        """From the test split's scores and embeddings, at most ``limit`` images of it (a fixed random subset)."""
        if len(scores) != len(embeddings):
            raise ValueError(f"{len(scores)} test scores but {len(embeddings)} embeddings")
        chosen = np.arange(len(scores))
        if len(chosen) > limit:
            chosen = np.sort(np.random.default_rng(0).choice(len(scores), limit, replace=False))
        kept = scores[chosen]
        return cls(
            labels=list(labels),
            predicted=kept.argmax(axis=1).astype(np.int64),
            confidences=kept.max(axis=1).astype(np.float32),
            embeddings=embeddings[chosen].astype(np.float32),
        )

    def predictions(self) -> Predictions:
        """The reference as the drift tests take it."""
        return Predictions(self.confidences, [self.labels[index] for index in self.predicted], self.embeddings)

    def to_npz(self) -> bytes:
        """The file's bytes."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            labels=np.array(self.labels, dtype=np.str_),
            predicted=self.predicted,
            confidences=self.confidences,
            embeddings=self.embeddings,
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> DriftReference:
        """Read a file ``to_npz`` wrote."""
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return cls(
                labels=[str(label) for label in arrays["labels"]],
                predicted=arrays["predicted"].astype(np.int64),
                confidences=arrays["confidences"].astype(np.float32),
                embeddings=arrays["embeddings"].astype(np.float32),
            )
