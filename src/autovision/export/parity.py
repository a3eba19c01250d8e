"""The parity check every fp32 export must pass before anything is served (pure): on logits, and on the
embedding the export serves beside them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from autovision.preprocess import FloatArray

# fp32 kernels differ in summation order between PyTorch and ONNX Runtime; anything
# beyond this on logits is a different function, not rounding.
PARITY_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    """An exported model computes something other than the trained model."""


@dataclass(frozen=True)
class ParityReport:
    """How closely one export matched the trained model on the test images."""

    artifact: str
    images: int
    max_abs_diff: float
    top1_mismatches: int
    tolerance: float

    @property
    def passed(self) -> bool:
        """Within tolerance everywhere and the same top-1 label on every image."""
        return self.images > 0 and self.max_abs_diff <= self.tolerance and self.top1_mismatches == 0

    def to_json(self) -> dict[str, Any]:
        """The model card's form of this report."""
        return {
            "images": self.images,
            "maxAbsDiff": self.max_abs_diff,
            "top1Identical": self.top1_mismatches == 0,
            "tolerance": self.tolerance,
        }


@dataclass
class ParityCheck:
    """One export's parity check, accumulated batch by batch, so the test split never has to be held whole.

    ``embeddings``: the tolerance is relative to the largest expected value (at
    least 1), since pooled features are not bounded like logits and fp32 rounding
    grows with them; logits are also held to the same top-1 label on every image.
    """

    artifact: str
    embeddings: bool = False
    tolerance: float = PARITY_TOLERANCE
    images: int = 0
    max_abs_diff: float = 0.0
    top1_mismatches: int = 0
    largest: float = 0.0

    def add(self, expected: FloatArray, actual: FloatArray) -> None:
        """Compare one batch's outputs; raise ExportParityError at once if their shapes differ."""
        if expected.shape != actual.shape:
            what = "embeddings" if self.embeddings else "logits"
            raise ExportParityError(
                f"{self.artifact} returns {what} of shape {actual.shape}, the trained model {expected.shape}"
            )
        self.images += len(expected)
        if not expected.size:
            return
        self.max_abs_diff = max(self.max_abs_diff, float(np.abs(expected - actual).max()))
        self.largest = max(self.largest, float(np.abs(expected).max()))
        if not self.embeddings:
            self.top1_mismatches += int((expected.argmax(axis=1) != actual.argmax(axis=1)).sum())

    def report(self) -> ParityReport:
        """The report over every batch added; raise ExportParityError on any mismatch."""
        tolerance = self.tolerance * max(1.0, self.largest) if self.embeddings else self.tolerance
        report = ParityReport(self.artifact, self.images, self.max_abs_diff, self.top1_mismatches, tolerance)
        if report.passed:
            return report
        if self.embeddings:
            raise ExportParityError(
                f"{self.artifact}'s embeddings differ from the trained model's on {report.images} test images: "
                f"max |difference| {report.max_abs_diff:.3e} (tolerance {report.tolerance:.1e})"
            )
        raise ExportParityError(
            f"{self.artifact} differs from the trained model on {report.images} test images: "
            f"max |logit difference| {report.max_abs_diff:.3e} (tolerance {tolerance:.0e}), "
            f"top-1 label differs on {report.top1_mismatches} images"
        )


def compare_logits(
    artifact: str, expected: FloatArray, actual: FloatArray, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """Compare an export's logits with the trained model's; raise ExportParityError on any mismatch."""
    check = ParityCheck(artifact, tolerance=tolerance)
    check.add(expected, actual)
    return check.report()
