"""Find perceptual near-duplicates among 64-bit dHashes without comparing every pair.

Pigeonhole principle: split the 64 bits into ``max_distance + 1`` bands; two hashes
at most ``max_distance`` bits apart agree exactly on at least one band. Only hashes
that share a band value are compared, each with at most ``BAND_NEIGHBOURS`` of
them, so a million images cost tens of seconds and a few arrays of memory however
clustered their hashes are (rather than all the pairs of a crowded band). Pure numpy.
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
# Hashes sharing a band value each one is compared with (see ``nearest_earlier``).
BAND_NEIGHBOURS = 32
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)

UInt64Array = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]
PairIndices = tuple[IntArray, IntArray]
# Candidate pairs compared at a time: bounds the working arrays, however many hashes share band values.
PAIRS_AT_A_TIME = 65_536


@dataclass(frozen=True, slots=True)
class Limits:
    """The distance that counts as near, and the images' count (the base of ``nearest_earlier``'s codes)."""

    max_distance: int
    images: int


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


def find_near_duplicates(hashes: Sequence[int], max_distance: int = NEAR_DUPLICATE_DISTANCE) -> list[NearDuplicate]:
    """For each image that resembles an earlier one, the nearest earlier image (``nearest_earlier`` as objects)."""
    index, similar_to, distance = nearest_earlier(np.array(hashes, dtype=np.uint64), max_distance)
    return [NearDuplicate(*found) for found in zip(index.tolist(), similar_to.tolist(), distance.tolist(), strict=True)]


def nearest_earlier(
    hashes: UInt64Array, max_distance: int = NEAR_DUPLICATE_DISTANCE
) -> tuple[IntArray, IntArray, IntArray]:
    """For each image that resembles an earlier one: its index, the nearest earlier image's and their distance,
    as arrays in the order of the images (ties go to the earlier image).

    Images with equal hashes are collapsed first: a later copy's nearest is the
    first one (distance 0), so only each distinct hash's first image is compared
    with other hashes. Within a band, each hash is compared with at most
    ``BAND_NEIGHBOURS`` others sharing its value, so work and memory stay linear
    however clustered the hashes are (exact unless more than that many distinct
    hashes share a band value: then the count is a lower bound). Memory: a few
    arrays of the images' count.
    """
    count = len(hashes)
    limits = Limits(max_distance, count)
    values, firsts, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Best (distance, earlier image) per distinct hash's first image, as one sortable code.
    worst = (HASH_BITS + 1) * (count + 1)
    best = np.full(len(values), worst, dtype=np.int64)
    for shift, width in _bands(max_distance):
        _compare_band((values >> np.uint64(shift)) & np.uint64((1 << width) - 1), best, values, firsts, limits)
    del values
    copies = firsts[inverse]
    del firsts
    is_copy = copies != np.arange(count)
    codes = best[inverse]
    del best, inverse
    distance = codes // (count + 1)
    distance[is_copy] = 0
    found = np.flatnonzero(distance <= max_distance)
    similar = np.where(is_copy[found], copies[found], codes[found] % (count + 1))
    return found.astype(np.int64), similar.astype(np.int64), distance[found].astype(np.int64)


def _compare_band(keys: UInt64Array, best: IntArray, values: UInt64Array, firsts: IntArray, limits: Limits) -> None:
    """Compare each distinct hash with up to ``BAND_NEIGHBOURS`` others that share its band value ``keys``."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    for offset in range(1, min(BAND_NEIGHBOURS, len(order) - 1) + 1):
        same = np.flatnonzero(sorted_keys[:-offset] == sorted_keys[offset:])
        if not len(same):
            break
        for start in range(0, len(same), PAIRS_AT_A_TIME):
            pairs = same[start : start + PAIRS_AT_A_TIME]
            _keep_nearest(best, values, firsts, (order[pairs], order[pairs + offset]), limits)


def _keep_nearest(best: IntArray, values: UInt64Array, firsts: IntArray, pairs: PairIndices, limits: Limits) -> None:
    """Lower ``best`` (each distinct hash's code of distance and earlier image) for the later hash of each pair of
    distinct hashes (``values`` and ``firsts`` indices) that are at most ``limits.max_distance`` bits apart."""
    first, second = pairs
    distances = hamming(values[first], values[second])
    close = distances <= limits.max_distance
    first, second, distances = first[close], second[close], distances[close]
    later = np.where(firsts[first] > firsts[second], first, second)
    earlier = np.where(firsts[first] > firsts[second], second, first)
    np.minimum.at(best, later, distances * (limits.images + 1) + firsts[earlier])
