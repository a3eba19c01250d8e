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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from autovision.data.manifest import SPLITS, SplitName
from autovision.data.rules import DatasetImportError

Percentages = tuple[int, int, int]
# Hashes turned into order keys, and pairs served, at a time.
KEY_SLICE = 65_536


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

    Every item needs at least one label. Returns a mapping sha256 -> split name
    (the dict form of ``stratified_codes``, for small sets of items).
    """
    labels_of = {sha256: sorted(set(labels)) for sha256, labels in items}
    shas = list(labels_of)
    codes = stratified_codes(
        pa.array(shas, pa.string()), pa.array(list(labels_of.values()), pa.list_(pa.string())), percentages, seed
    )
    return {sha256: SPLITS[code] for sha256, code in zip(shas, codes.tolist(), strict=True)}


def stratified_codes(sha256: pa.Array, labels: pa.Array, percentages: Percentages, seed: int) -> npt.NDArray[np.int8]:
    """Each item's split as an index into ``SPLITS``, from columns: the images' hashes and their labels
    (each item's labels sorted, each once, at least one).

    Labels are served rarest first (then by name); each label's images in the
    order of sha256(f"{seed}:{sha256}"), each one not yet placed going to the
    split that still wants the most images of that label. Holds arrays and one
    small list per label, never an object per image, so a million images take
    tens of megabytes.
    """
    count = len(sha256)
    assigned = np.full(count, -1, dtype=np.int8)
    if count == 0:
        return assigned
    parents = pc.list_parent_indices(labels).to_numpy()
    encoded = pc.dictionary_encode(pc.list_flatten(labels))
    ids = encoded.indices.to_numpy().astype(np.int64)
    names: list[str] = encoded.dictionary.to_pylist()
    per_label = np.bincount(ids, minlength=len(names))
    wanted = [list(allocate(int(size), percentages)) for size in per_label]
    served = sorted(range(len(names)), key=lambda label: (int(per_label[label]), names[label]))
    rank = np.empty(len(names), dtype=np.int64)
    rank[served] = np.arange(len(names))
    pairs = np.lexsort((_order_keys(sha256, seed)[parents], rank[ids]))
    # The pairs' items and labels in serving order, and each item's labels at ids[first[item]:first[item + 1]].
    item_of, label_of = parents[pairs], ids[pairs]
    del pairs
    first = np.searchsorted(parents, np.arange(count + 1))
    single = np.diff(first) == 1
    open_splits = [i for i, percent in enumerate(percentages) if percent > 0]
    # Python ints a slice at a time (the loop is Python): never a list of every pair.
    for start in range(0, len(item_of), KEY_SLICE):
        stop = start + KEY_SLICE
        for item, label in zip(item_of[start:stop].tolist(), label_of[start:stop].tolist(), strict=True):
            if assigned[item] >= 0:
                continue
            own = [label] if single[item] else ids[first[item] : first[item + 1]].tolist()
            index = _neediest_split(wanted, open_splits, label, own)
            assigned[item] = index
            for other in own:
                wanted[other][index] -= 1
    return assigned


def _order_keys(sha256: pa.Array, seed: int) -> npt.NDArray[np.uint64]:
    """Each item's place in its label's queue: the first 8 bytes of sha256(f"{seed}:{sha256}"), big-endian,
    computed a slice at a time (8 bytes an item where the whole digest took 32; items whose keys tie, which
    2^64 values make all but impossible, keep the items' order)."""
    keys = np.empty(len(sha256), dtype=np.uint64)
    for start in range(0, len(sha256), KEY_SLICE):
        shas = sha256.slice(start, KEY_SLICE).to_pylist()
        digests = b"".join(hashlib.sha256(f"{seed}:{sha}".encode()).digest()[:8] for sha in shas)
        keys[start : start + len(shas)] = np.frombuffer(digests, dtype=">u8")
    return keys


def _neediest_split(wanted: list[list[int]], open_splits: list[int], label: int, labels: list[int]) -> int:
    """The open split that still wants the most images of ``label``; ties go to the
    one all of the image's labels want most, then to the earlier split."""
    return max(
        open_splits,
        key=lambda i: (wanted[label][i], sum(wanted[other][i] for other in labels), -i),
    )
