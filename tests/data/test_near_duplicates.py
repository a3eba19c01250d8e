"""The near-duplicate search (pure), against a brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autovision.data import near_duplicates
from autovision.data.near_duplicates import HASH_BITS, NearDuplicate, find_near_duplicates

hashes = st.integers(0, 2**64 - 1)


def _brute_force(values: list[int], max_distance: int) -> list[NearDuplicate]:
    found = []
    for j, value in enumerate(values):
        earlier = [(bin(value ^ values[i]).count("1"), i) for i in range(j)]
        close = [pair for pair in earlier if pair[0] <= max_distance]
        if close:
            distance, i = min(close)
            found.append(NearDuplicate(j, i, distance))
    return found


@st.composite
def hash_lists(draw: st.DrawFn) -> list[int]:
    """Random hashes, some of them copies with a few bits flipped, some repeated exactly."""
    values = draw(st.lists(hashes, min_size=1, max_size=40))
    for _ in range(draw(st.integers(0, 30))):
        source = draw(st.sampled_from(values))
        flips = draw(st.lists(st.integers(0, HASH_BITS - 1), max_size=6))
        for bit in flips:
            source ^= 1 << bit
        values.insert(draw(st.integers(0, len(values))), source)
    return values


@settings(max_examples=80)
@given(values=hash_lists(), max_distance=st.integers(0, 8))
def test_matches_brute_force(values: list[int], max_distance: int) -> None:
    assert find_near_duplicates(values, max_distance) == _brute_force(values, max_distance)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=hash_lists(), max_distance=st.integers(0, 8))
def test_pairs_compared_a_few_at_a_time_find_the_same(
    values: list[int], max_distance: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(near_duplicates, "PAIRS_AT_A_TIME", 3)
    assert find_near_duplicates(values, max_distance) == _brute_force(values, max_distance)


def test_many_identical_hashes_stay_linear() -> None:
    found = find_near_duplicates([0] * 20_000 + [2**64 - 1])
    assert len(found) == 19_999
    assert all(near.similar_to == 0 and near.distance == 0 for near in found)
