"""Drift of a window of logged predictions from the model's test split (pure: no I/O).

Three two-sample tests, each on what the served model itself reports, the
"black-box shift detection" of Rabanser, Günnemann and Lipton, *Failing Loudly*
(NeurIPS 2019), which found tests on the model's own outputs and
representations the most reliable at detecting dataset shift:

- **confidence**: the two-sample Kolmogorov-Smirnov test on top-1 scores;
- **labels**: Pearson's chi-square statistic of homogeneity on the predicted-label
  counts (reference row against window row), its p-value from a permutation test
  (exact for small counts, where the chi-square approximation is not);
- **embedding**: the maximum mean discrepancy (MMD², Gretton et al., JMLR 2012)
  with a Gaussian (RBF) kernel whose bandwidth is the median pairwise distance,
  its p-value from a permutation test. It works in the hundreds of dimensions
  with a few hundred samples, where per-dimension tests lose power.

NumPy only, no SciPy: the monitor runs in the core image, which has no SciPy
(it comes with the trainer's scikit-learn). The KS p-value is the asymptotic
Kolmogorov distribution with Stephens' small-sample correction (Numerical Recipes
§14.3), the others are permutation p-values, ``(1 + exceeded) / (1 + permutations)``.

The window drifts when any test's p-value falls below ``alpha / tests run``
(Bonferroni), so the chance that in-distribution traffic is called drift is at
most ``alpha`` (measured in docs/benchmarks.md). A window with no logged traffic,
or fewer than ``min_window`` predictions, is *unknown*: no evidence either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

# The family-wise false-positive rate the tests together are held to.
DEFAULT_ALPHA = 0.05
# Fewer predictions than this say too little about a distribution to call drift either way.
DEFAULT_MIN_WINDOW = 30
# Terms of the Kolmogorov distribution's series: they fall as exp(-2 k^2 lambda^2), 100 is far past float precision.
_KOLMOGOROV_TERMS = 100
# Permutations of the label and MMD tests: its smallest p-value is 1 / (permutations + 1).
DEFAULT_PERMUTATIONS = 500
# Each side's embeddings are subsampled to this many rows: the kernel matrix grows with its square.
DEFAULT_MAX_EMBEDDINGS = 500


class DriftStatus(StrEnum):
    """What a window says: drift, no drift, or unknown (too little traffic to tell)."""

    DRIFT = "Drift"
    NO_DRIFT = "NoDrift"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Predictions:
    """What the tests compare, one row per image: top-1 score, top-1 label, and the embedding where known.

    ``embeddings`` holds the rows that have one (a model exported without an
    embedding output logs none); it may be empty.
    """

    confidences: FloatArray
    labels: list[str]
    embeddings: FloatArray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __post_init__(self) -> None:
        if len(self.confidences) != len(self.labels):
            raise ValueError(f"{len(self.confidences)} confidences but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DriftSettings:
    """The thresholds: family-wise ``alpha``, the smallest window judged, the MMD test's size and seed."""

    alpha: float = DEFAULT_ALPHA
    min_window: int = DEFAULT_MIN_WINDOW
    permutations: int = DEFAULT_PERMUTATIONS
    max_embeddings: int = DEFAULT_MAX_EMBEDDINGS
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie strictly between 0 and 1, got {self.alpha}")
        if self.min_window < 2 or self.permutations < 1 or self.max_embeddings < 2:
            raise ValueError("min_window and max_embeddings must be at least 2, permutations at least 1")


@dataclass(frozen=True)
class TestResult:
    """One test on one aspect of the predictions: its statistic, p-value and whether it rejects."""

    aspect: str
    method: str
    statistic: float
    p_value: float
    drift: bool


@dataclass(frozen=True)
class DriftResult:
    """The window's verdict, the tests behind it and the threshold each p-value was held to."""

    status: DriftStatus
    reason: str
    window: int
    reference: int
    threshold: float
    tests: list[TestResult]


def kolmogorov_p_value(statistic: float, reference: int, window: int) -> float:
    """The asymptotic two-sample KS p-value of ``statistic`` for samples of these sizes."""
    effective = np.sqrt(reference * window / (reference + window))
    scaled = (effective + 0.12 + 0.11 / effective) * statistic
    if scaled < 1e-3:
        return 1.0
    terms = np.arange(1, _KOLMOGOROV_TERMS + 1)
    series = 2.0 * np.sum((-1.0) ** (terms - 1) * np.exp(-2.0 * terms**2 * scaled**2))
    return float(min(max(series, 0.0), 1.0))


def confidence_test(reference: FloatArray, window: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov on top-1 scores: (D statistic, p-value)."""
    pooled = np.sort(np.concatenate([reference, window]))
    reference_cdf = np.searchsorted(np.sort(reference), pooled, side="right") / len(reference)
    window_cdf = np.searchsorted(np.sort(window), pooled, side="right") / len(window)
    statistic = float(np.abs(reference_cdf - window_cdf).max())
    return statistic, kolmogorov_p_value(statistic, len(reference), len(window))


def _chi_square(codes: npt.NDArray[np.int64], first: npt.NDArray[np.bool_], categories: int) -> float:
    table = np.stack(
        [np.bincount(codes[first], minlength=categories), np.bincount(codes[~first], minlength=categories)]
    ).astype(np.float64)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def label_test(
    reference: list[str], window: list[str], permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Chi-square homogeneity of predicted-label counts, permutation p-value: (chi², p-value)."""
    names, codes = np.unique(np.array([*reference, *window]), return_inverse=True)
    first = np.arange(len(codes)) < len(reference)
    observed = _chi_square(codes, first, len(names))
    exceeded = sum(_chi_square(codes, rng.permutation(first), len(names)) >= observed for _ in range(permutations))
    return observed, (1 + exceeded) / (1 + permutations)


def _squared_distances(rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = (rows * rows).sum(axis=1)
    distances: npt.NDArray[np.float64] = np.maximum(norms[:, None] + norms[None, :] - 2.0 * rows @ rows.T, 0.0)
    return distances


def _mmd2(kernel: npt.NDArray[np.float64], splits: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    """The biased MMD² of each column's split (True: the first sample) from the pooled kernel matrix.

    With weights ``+1/n`` on the first sample's rows and ``-1/m`` on the second's,
    MMD² is ``w^T K w``: every permutation is one column of one matrix product.
    """
    first = splits.sum(axis=0)
    weights = np.where(splits, 1.0 / first, -1.0 / (len(splits) - first))
    values: npt.NDArray[np.float64] = ((kernel @ weights) * weights).sum(axis=0)
    return values


def embedding_test(
    reference: FloatArray, window: FloatArray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """MMD² with an RBF kernel (median-distance bandwidth) and a permutation p-value: (MMD², p-value)."""
    pooled = np.concatenate([reference, window]).astype(np.float64)
    distances = _squared_distances(pooled)
    off_diagonal = distances[~np.eye(len(pooled), dtype=bool)]
    bandwidth = float(np.median(off_diagonal)) or 1.0
    kernel = np.exp(-distances / bandwidth)
    first = np.arange(len(pooled)) < len(reference)
    observed = float(_mmd2(kernel, first[:, None])[0])
    shuffled = np.stack([rng.permutation(first) for _ in range(permutations)], axis=1)
    exceeded = int((_mmd2(kernel, shuffled) >= observed).sum())
    return observed, (1 + exceeded) / (1 + permutations)


def _subsample(rows: FloatArray, limit: int, rng: np.random.Generator) -> FloatArray:
    return rows if len(rows) <= limit else rows[np.sort(rng.choice(len(rows), limit, replace=False))]


def detect_drift(reference: Predictions, window: Predictions, settings: DriftSettings | None = None) -> DriftResult:
    """Compare a window of logged predictions with the reference; see the module's docstring for the tests."""
    settings = settings or DriftSettings()
    if len(window) < settings.min_window:
        reason = (
            "no logged predictions in the window"
            if not len(window)
            else (f"{len(window)} logged predictions, fewer than the {settings.min_window} a verdict needs")
        )
        return DriftResult(DriftStatus.UNKNOWN, reason, len(window), len(reference), 0.0, [])
    rng = np.random.default_rng(settings.seed)
    measured = [
        ("confidence", "Kolmogorov-Smirnov", *confidence_test(reference.confidences, window.confidences)),
        (
            "labels",
            "chi-square (permutation test)",
            *label_test(reference.labels, window.labels, settings.permutations, rng),
        ),
    ]
    embedded = min(len(reference.embeddings), len(window.embeddings)) >= settings.min_window
    if embedded and reference.embeddings.shape[1] != window.embeddings.shape[1]:
        raise ValueError(
            f"the window's embeddings have {window.embeddings.shape[1]} dimensions, the reference's "
            f"{reference.embeddings.shape[1]}: they come from another model"
        )
    if embedded:
        mmd = embedding_test(
            _subsample(reference.embeddings, settings.max_embeddings, rng),
            _subsample(window.embeddings, settings.max_embeddings, rng),
            settings.permutations,
            rng,
        )
        measured.append(("embedding", "MMD (RBF kernel, permutation test)", *mmd))
    threshold = settings.alpha / len(measured)
    tests = [TestResult(aspect, method, stat, p, p < threshold) for aspect, method, stat, p in measured]
    drifted = [test.aspect for test in tests if test.drift]
    skipped = "" if embedded else "; embeddings not compared (too few logged)"
    reason = (f"drift in {', '.join(drifted)}" if drifted else "no test rejects") + skipped
    return DriftResult(
        DriftStatus.DRIFT if drifted else DriftStatus.NO_DRIFT, reason, len(window), len(reference), threshold, tests
    )
