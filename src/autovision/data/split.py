"""Deterministic stratified train/validation/test split, single- and multi-label.

Pure logic: the same images and seed always give the same split, whatever order
the source listed them in, so re-importing the same data yields the same version.

Multi-label data uses iterative stratification (Sechidis, Tsoumakas and Vlahavas,
2011): labels are served rarest first, and each image goes to the split that still
wants the most images of that label. With one label per image this reduces to an
exact per-label allocation.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autovision.data.manifest import SPLITS, SplitName
from autovision.data.rules import DatasetImportError

Percentages = tuple[int, int, int]


@dataclass(frozen=True)
class SplitSettings:
    """Integer percentages and seed of the automatic split."""

    train: int = 80
    validation: int = 10
    test: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.percentages) < 0 or self.train < 1 or sum(self.percentages) != 100:
            raise DatasetImportError(
                f"split {self.train}/{self.validation}/{self.test} must be non-negative, "
                "train at least 1, summing to 100"
            )

    @property
    def percentages(self) -> Percentages:
        """(train, validation, test) in percent."""
        return (self.train, self.validation, self.test)


def _order_key(sha256: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def allocate(count: int, percentages: Percentages) -> tuple[int, int, int]:
    """Split a count in proportion to ``percentages`` (largest remainder).

    Validation and test get at least one image each when there are enough images
    and they ask for any. The percentages need not sum to 100.
    """
    total = sum(percentages)
    exact = [count * p / total for p in percentages]
    sizes = [int(x) for x in exact]
    remainders = sorted(range(3), key=lambda i: exact[i] - sizes[i], reverse=True)
    for i in remainders[: count - sum(sizes)]:
        sizes[i] += 1
    for i in (1, 2):
        if sizes[i] == 0 and percentages[i] > 0 and sizes[0] > 1:
            sizes[i] += 1
            sizes[0] -= 1
    return sizes[0], sizes[1], sizes[2]


def stratified_split(
    items: Iterable[tuple[str, Sequence[str]]], percentages: Percentages, seed: int
) -> dict[str, SplitName]:
    """Assign each (sha256, labels) item a split, stratified per label.

    Every item needs at least one label. Returns a mapping sha256 -> split name.
    """
    labels_of: dict[str, tuple[str, ...]] = {sha256: tuple(sorted(set(labels))) for sha256, labels in items}
    by_label: dict[str, list[str]] = defaultdict(list)
    for sha256, labels in labels_of.items():
        for label in labels:
            by_label[label].append(sha256)
    wanted = {label: list(allocate(len(shas), percentages)) for label, shas in by_label.items()}
    open_splits = [i for i, percent in enumerate(percentages) if percent > 0]
    assignment: dict[str, SplitName] = {}
    for label in sorted(by_label, key=lambda name: (len(by_label[name]), name)):
        for sha256 in sorted(by_label[label], key=lambda sha: _order_key(sha, seed)):
            if sha256 not in assignment:
                index = _neediest_split(wanted, open_splits, label, labels_of[sha256])
                assignment[sha256] = SPLITS[index]
                for other in labels_of[sha256]:
                    wanted[other][index] -= 1
    return assignment


def _neediest_split(wanted: dict[str, list[int]], open_splits: list[int], label: str, labels: tuple[str, ...]) -> int:
    """The open split that still wants the most images of ``label``; ties go to the
    one all of the image's labels want most, then to the earlier split."""
    return max(
        open_splits,
        key=lambda i: (wanted[label][i], sum(wanted[other][i] for other in labels), -i),
    )
