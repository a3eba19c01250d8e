"""The deterministic stratified split (pure)."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from autovision.data.split import allocate, stratified_split


def _items(per_label: dict[str, int]) -> list[tuple[str, str]]:
    return [
        (hashlib.sha256(f"{label}{i}".encode()).hexdigest(), label)
        for label, count in per_label.items()
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("count", "percentages", "expected"),
    [
        (100, (80, 10, 10), (80, 10, 10)),
        (15, (80, 10, 10), (12, 2, 1)),
        (10, (80, 10, 10), (8, 1, 1)),
        (3, (80, 10, 10), (1, 1, 1)),
    ],
)
def test_allocate(count: int, percentages: tuple[int, int, int], expected: tuple[int, int, int]) -> None:
    assert allocate(count, percentages) == expected
    assert sum(allocate(count, percentages)) == count


def test_split_is_stratified_and_order_independent() -> None:
    items = _items({"cat": 50, "dog": 30})
    first = stratified_split(items, (80, 10, 10), seed=0)
    second = stratified_split(list(reversed(items)), (80, 10, 10), seed=0)
    assert first == second
    per_label = Counter((label, first[sha]) for sha, label in items)
    assert per_label[("cat", "train")] == 40
    assert per_label[("dog", "test")] == 3


def test_seed_changes_the_split() -> None:
    items = _items({"cat": 50})
    assert stratified_split(items, (80, 10, 10), seed=0) != stratified_split(items, (80, 10, 10), seed=1)
