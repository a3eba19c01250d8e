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


def compare_logits(
    artifact: str, expected: FloatArray, actual: FloatArray, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """Compare an export's logits with the trained model's; raise ExportParityError on any mismatch."""
    if expected.shape != actual.shape:
        raise ExportParityError(
            f"{artifact} returns logits of shape {actual.shape}, the trained model {expected.shape}"
        )
    report = ParityReport(
        artifact=artifact,
        images=len(expected),
        max_abs_diff=float(np.abs(expected - actual).max()) if expected.size else 0.0,
        top1_mismatches=int((expected.argmax(axis=1) != actual.argmax(axis=1)).sum()) if expected.size else 0,
        tolerance=tolerance,
    )
    if not report.passed:
        raise ExportParityError(
            f"{artifact} differs from the trained model on {report.images} test images: "
            f"max |logit difference| {report.max_abs_diff:.3e} (tolerance {tolerance:.0e}), "
            f"top-1 label differs on {report.top1_mismatches} images"
        )
    return report


def compare_embeddings(
    artifact: str, expected: FloatArray, actual: FloatArray, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """Compare an export's embeddings with the trained model's; raise ExportParityError past the tolerance.

    The tolerance is relative to the largest embedding value (at least 1): pooled
    features are not bounded like logits, and fp32 rounding grows with them.
    """
    if expected.shape != actual.shape:
        raise ExportParityError(
            f"{artifact} returns embeddings of shape {actual.shape}, the trained model {expected.shape}"
        )
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    report = ParityReport(
        artifact=artifact,
        images=len(expected),
        max_abs_diff=float(np.abs(expected - actual).max()) if expected.size else 0.0,
        top1_mismatches=0,
        tolerance=tolerance * scale,
    )
    if not report.passed:
        raise ExportParityError(
            f"{artifact}'s embeddings differ from the trained model's on {report.images} test images: "
            f"max |difference| {report.max_abs_diff:.3e} (tolerance {report.tolerance:.1e})"
        )
    return report
