"""Find perceptual near-duplicates among 64-bit dHashes without comparing every pair.

Pigeonhole principle: split the 64 bits into ``max_distance + 1`` bands; two hashes
at most ``max_distance`` bits apart agree exactly on at least one band. Only hashes
that share a band value are compared, which keeps 60,000 images to well under a
second instead of 1.8 billion comparisons. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HASH_BITS = 64
# dHash-64 distance at which two images count as near-duplicates. Re-encoding or
# resizing a photo moves its hash by 0-2 bits; unrelated photos are ~32 apart.
NEAR_DUPLICATE_DISTANCE = 4
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)

UInt64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class NearDuplicate:
    """Image ``index`` looks like the earlier image ``similar_to``."""

    index: int
    similar_to: int
    distance: int


def hamming(first: UInt64Array, second: UInt64Array) -> npt.NDArray[np.int64]:
    """Bitwise distance of two equal-length arrays of 64-bit hashes."""
    differing = np.bitwise_xor(first, second).view(np.uint8).reshape(-1, 8)
    counts: npt.NDArray[np.int64] = _POPCOUNT[differing].sum(axis=1, dtype=np.int64)
    return counts


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of ``max_distance + 1`` bands covering all 64 bits."""
    count = max_distance + 1
    widths = [HASH_BITS // count + (1 if i < HASH_BITS % count else 0) for i in range(count)]
    starts = np.cumsum([0, *widths[:-1]])
    return [(int(start), width) for start, width in zip(starts, widths, strict=True)]


def close_pairs(hashes: UInt64Array, max_distance: int) -> tuple[IntArray, IntArray, IntArray]:
    """Every pair (i < j) of distinct-valued hashes at most ``max_distance`` apart."""
    found: dict[tuple[int, int], int] = {}
    for shift, width in _bands(max_distance):
        keys = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        offset = 1
        # Items sharing a band value are adjacent once sorted; widen the offset until no group is that long.
        while offset < len(order):
            same = sorted_keys[:-offset] == sorted_keys[offset:]
            if not same.any():
                break
            first, second = order[:-offset][same], order[offset:][same]
            distances = hamming(hashes[first], hashes[second])
            close = distances <= max_distance
            for i, j, distance in zip(first[close], second[close], distances[close], strict=True):
                found[(int(min(i, j)), int(max(i, j)))] = int(distance)
            offset += 1
    pairs = sorted(found)
    return (
        np.array([i for i, _ in pairs], dtype=np.int64),
        np.array([j for _, j in pairs], dtype=np.int64),
        np.array([found[pair] for pair in pairs], dtype=np.int64),
    )


def find_near_duplicates(hashes: Sequence[int], max_distance: int = NEAR_DUPLICATE_DISTANCE) -> list[NearDuplicate]:
    """For each image that resembles an earlier one, the nearest earlier image (``nearest_earlier`` as objects)."""
    index, similar_to, distance = nearest_earlier(np.array(hashes, dtype=np.uint64), max_distance)
    return [NearDuplicate(*found) for found in zip(index.tolist(), similar_to.tolist(), distance.tolist(), strict=True)]


def nearest_earlier(
    hashes: UInt64Array, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> tuple[IntArray, IntArray, IntArray]:
    """For each image that resembles an earlier one: its index, the nearest earlier image's and their distance,
    as arrays in the order of the images.

    Images with equal hashes are collapsed first, so a thousand blank images cost
    one comparison; memory is a few arrays of the images' count, plus the members
    of groups that are close to another (few).
    """
    count = len(hashes)
    values, firsts, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    best_distance = np.full(count, HASH_BITS + 1, dtype=np.int64)
    best_similar = np.arange(count, dtype=np.int64)
    group_first = firsts[inverse]
    repeated = group_first != np.arange(count)
    best_distance[repeated] = 0
    best_similar[repeated] = group_first[repeated]
    members = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[members], np.arange(len(values) + 1))
    for first, second, distance in zip(*(part.tolist() for part in close_pairs(values, max_distance)), strict=True):
        for group, other in ((second, first), (first, second)):
            indices = members[bounds[group] : bounds[group + 1]]
            candidate = int(firsts[other])
            better = (candidate < indices) & (
                (distance < best_distance[indices])
                | ((distance == best_distance[indices]) & (candidate < best_similar[indices]))
            )
            best_distance[indices[better]] = distance
            best_similar[indices[better]] = candidate
    found = np.flatnonzero(best_distance <= HASH_BITS)
    return found.astype(np.int64), best_similar[found], best_distance[found]
