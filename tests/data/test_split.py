"""The deterministic stratified split (pure), single- and multi-label."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autovision.data.manifest import SPLITS
from autovision.data.split import allocate, stratified_split

LABELS = ("cat", "dog", "bird", "fish")
percentages = st.sampled_from([(80, 10, 10), (70, 15, 15), (90, 10, 0), (100, 0, 0), (34, 33, 33), (1, 0, 99)])


def _items(per_label: dict[str, int]) -> list[tuple[str, tuple[str, ...]]]:
    return [
        (hashlib.sha256(f"{label}{i}".encode()).hexdigest(), (label,))
        for label, count in per_label.items()
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("count", "split", "expected"),
    [
        (100, (80, 10, 10), (80, 10, 10)),
        (15, (80, 10, 10), (12, 2, 1)),
        (10, (80, 10, 10), (8, 1, 1)),
        (3, (80, 10, 10), (1, 1, 1)),
        (18, (80, 10, 0), (16, 2, 0)),
    ],
)
def test_allocate(count: int, split: tuple[int, int, int], expected: tuple[int, int, int]) -> None:
    assert allocate(count, split) == expected


@given(count=st.integers(0, 5000), split=percentages)
def test_allocate_is_complete_and_proportional(count: int, split: tuple[int, int, int]) -> None:
    sizes = allocate(count, split)
    assert sum(sizes) == count
    assert min(sizes) >= 0
    for size, percent in zip(sizes, split, strict=True):
        assert percent > 0 or size == 0
        assert abs(size - count * percent / sum(split)) <= 1 + (count >= 3)


def test_split_is_stratified_and_order_independent() -> None:
    items = _items({"cat": 50, "dog": 30})
    first = stratified_split(items, (80, 10, 10), seed=0)
    assert first == stratified_split(list(reversed(items)), (80, 10, 10), seed=0)
    per_label = Counter((labels[0], first[sha]) for sha, labels in items)
    assert per_label[("cat", "train")] == 40
    assert per_label[("dog", "test")] == 3


def test_seed_changes_the_split() -> None:
    items = _items({"cat": 50})
    assert stratified_split(items, (80, 10, 10), seed=0) != stratified_split(items, (80, 10, 10), seed=1)


@settings(max_examples=60)
@given(counts=st.lists(st.integers(1, 60), min_size=1, max_size=4), split=percentages, seed=st.integers(0, 2**32 - 1))
def test_single_label_splits_match_the_allocation_exactly(
    counts: list[int], split: tuple[int, int, int], seed: int
) -> None:
    items = _items(dict(zip(LABELS, counts, strict=False)))
    assignment = stratified_split(items, split, seed)
    for label, count in zip(LABELS, counts, strict=False):
        got = Counter(assignment[sha] for sha, labels in items if labels[0] == label)
        assert tuple(got[name] for name in SPLITS) == allocate(count, split)


@settings(max_examples=60)
@given(
    label_sets=st.lists(st.sets(st.sampled_from(LABELS), min_size=1), min_size=1, max_size=150),
    split=percentages,
    seed=st.integers(0, 2**32 - 1),
)
def test_multi_label_split_is_complete_deterministic_and_respects_closed_splits(
    label_sets: list[set[str]], split: tuple[int, int, int], seed: int
) -> None:
    items = [(hashlib.sha256(str(i).encode()).hexdigest(), tuple(labels)) for i, labels in enumerate(label_sets)]
    assignment = stratified_split(items, split, seed)
    assert set(assignment) == {sha for sha, _ in items}
    assert stratified_split(list(reversed(items)), split, seed) == assignment
    closed = {name for name, percent in zip(SPLITS, split, strict=True) if percent == 0}
    assert not closed & set(assignment.values())


def test_multi_label_keeps_a_rare_label_in_every_split() -> None:
    items: list[tuple[str, tuple[str, ...]]] = [
        (hashlib.sha256(f"c{i}".encode()).hexdigest(), ("common",)) for i in range(500)
    ]
    items += [(hashlib.sha256(f"r{i}".encode()).hexdigest(), ("common", "rare")) for i in range(10)]
    assignment = stratified_split(items, (80, 10, 10), seed=3)
    rare = Counter(assignment[sha] for sha, labels in items if "rare" in labels)
    assert rare == {"train": 8, "validation": 1, "test": 1}


def _per_image_split(
    items: list[tuple[str, tuple[str, ...]]], split: tuple[int, int, int], seed: int
) -> dict[str, str]:
    """The split as it was computed before it worked on columns (one dict entry per image): versions imported
    then keep their ids only if the columnar split gives the same answer."""
    labels_of = {sha: tuple(sorted(set(labels))) for sha, labels in items}
    by_label: dict[str, list[str]] = {}
    for sha, labels in labels_of.items():
        for label in labels:
            by_label.setdefault(label, []).append(sha)
    wanted = {label: list(allocate(len(shas), split)) for label, shas in by_label.items()}
    open_splits = [i for i, percent in enumerate(split) if percent > 0]
    assignment: dict[str, str] = {}
    for label in sorted(by_label, key=lambda name: (len(by_label[name]), name)):
        for sha in sorted(by_label[label], key=lambda sha: hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest()):
            if sha not in assignment:
                own = labels_of[sha]
                index = max(open_splits, key=lambda i: (wanted[label][i], sum(wanted[o][i] for o in own), -i))
                assignment[sha] = SPLITS[index]
                for other in own:
                    wanted[other][index] -= 1
    return assignment


@settings(max_examples=40)
@given(
    label_sets=st.lists(st.sets(st.sampled_from(LABELS), min_size=1), min_size=1, max_size=120),
    split=percentages,
    seed=st.integers(0, 2**32 - 1),
)
def test_the_columnar_split_is_the_per_image_split(
    label_sets: list[set[str]], split: tuple[int, int, int], seed: int
) -> None:
    items = [(hashlib.sha256(str(i).encode()).hexdigest(), tuple(labels)) for i, labels in enumerate(label_sets)]
    assert stratified_split(items, split, seed) == _per_image_split(items, split, seed)
