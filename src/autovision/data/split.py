"""Deterministic stratified train/validation/test split.

Pure logic: the same images and seed always give the same split, whatever order
the archive listed them in, so re-importing the same data yields the same version.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from autovision.data.manifest import SPLITS, SplitName


def _order_key(sha256: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def allocate(count: int, percentages: tuple[int, int, int]) -> tuple[int, int, int]:
    """Split a count by integer percentages (largest remainder), validation and test
    getting at least one image each when there are enough images and they ask for it."""
    exact = [count * p / 100 for p in percentages]
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
    items: list[tuple[str, str]], percentages: tuple[int, int, int], seed: int
) -> dict[str, SplitName]:
    """Assign each (sha256, label) item a split, stratified by label.

    Returns a mapping sha256 -> split name.
    """
    by_label: dict[str, list[str]] = defaultdict(list)
    for sha256, label in items:
        by_label[label].append(sha256)
    assignment: dict[str, SplitName] = {}
    for label in sorted(by_label):
        ordered = sorted(by_label[label], key=lambda sha: _order_key(sha, seed))
        sizes = allocate(len(ordered), percentages)
        start = 0
        for split, size in zip(SPLITS, sizes, strict=True):
            for sha256 in ordered[start : start + size]:
                assignment[sha256] = split
            start += size
    return assignment
