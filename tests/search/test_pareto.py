"""The accuracy/latency Pareto front and the choice optimizeFor makes on it (pure)."""

from __future__ import annotations

import pytest

from autovision.resources import OptimizeFor
from autovision.search.pareto import Point, choose, dominates, pareto_front

ACCURATE_SLOW = Point(trial=0, value=0.990, latency_ms=20.0)
NEARLY_FAST = Point(trial=1, value=0.987, latency_ms=5.0)
DECENT_FASTEST = Point(trial=2, value=0.965, latency_ms=1.0)
POOR_FASTEST = Point(trial=3, value=0.60, latency_ms=0.5)
DOMINATED = Point(trial=4, value=0.95, latency_ms=30.0)
CANDIDATES = [ACCURATE_SLOW, NEARLY_FAST, DECENT_FASTEST, POOR_FASTEST, DOMINATED]


def test_front_drops_dominated_points_and_is_fastest_first() -> None:
    assert dominates(ACCURATE_SLOW, DOMINATED)
    assert not dominates(ACCURATE_SLOW, NEARLY_FAST)
    assert pareto_front(CANDIDATES) == [POOR_FASTEST, DECENT_FASTEST, NEARLY_FAST, ACCURATE_SLOW]


@pytest.mark.parametrize(
    ("optimize_for", "expected"),
    [
        (OptimizeFor.HIGH_ACCURACY, ACCURATE_SLOW),
        (OptimizeFor.BALANCED, NEARLY_FAST),
        (OptimizeFor.LOW_LATENCY, DECENT_FASTEST),
    ],
)
def test_optimize_for_picks_along_the_front(optimize_for: OptimizeFor, expected: Point) -> None:
    assert choose(CANDIDATES, optimize_for) == expected


def test_optimize_for_changes_the_choice_only_when_latencies_differ() -> None:
    same_latency = [Point(0, 0.99, 5.0), Point(1, 0.98, 5.0)]
    assert {choose(same_latency, mode).trial for mode in OptimizeFor} == {0}
    faster = [Point(0, 0.99, 5.0), Point(1, 0.98, 1.0)]
    assert choose(faster, OptimizeFor.HIGH_ACCURACY).trial == 0
    assert choose(faster, OptimizeFor.LOW_LATENCY).trial == 1


def test_ties_go_to_the_faster_then_earlier_trial() -> None:
    assert choose([Point(3, 0.9, 2.0), Point(1, 0.9, 2.0), Point(2, 0.9, 1.0)], OptimizeFor.HIGH_ACCURACY).trial == 2
    assert choose([Point(3, 0.9, 2.0), Point(1, 0.9, 2.0)], OptimizeFor.HIGH_ACCURACY).trial == 1


def test_nothing_to_choose_from_is_an_error() -> None:
    with pytest.raises(ValueError, match="no finished trial"):
        choose([], OptimizeFor.BALANCED)
