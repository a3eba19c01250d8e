"""The accuracy/latency Pareto front of the finished trials and the choice ``optimizeFor`` makes (pure).

HighAccuracy takes the most accurate candidate. Balanced and LowLatency take the
fastest candidate whose validation metric is within a tolerance of the best one
(half a point and three points): a model that is much faster and only slightly
less accurate is what those settings ask for, and the tolerances keep a fast but
poor model from ever being chosen. The winner is always on the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autovision.resources import OptimizeFor

TOLERANCE = {OptimizeFor.HIGH_ACCURACY: 0.0, OptimizeFor.BALANCED: 0.005, OptimizeFor.LOW_LATENCY: 0.03}


@dataclass(frozen=True)
class Point:
    """One candidate model: its trial, validation metric (higher is better) and batch-1 latency."""

    trial: int
    value: float
    latency_ms: float


def dominates(a: Point, b: Point) -> bool:
    """Whether a is at least as good as b on both axes and strictly better on one."""
    no_worse = a.value >= b.value and a.latency_ms <= b.latency_ms
    return no_worse and (a.value > b.value or a.latency_ms < b.latency_ms)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates, fastest first (ties: the earlier trial)."""
    front = [point for point in points if not any(dominates(other, point) for other in points)]
    return sorted(front, key=lambda point: (point.latency_ms, -point.value, point.trial))


def choose(points: Sequence[Point], optimize_for: OptimizeFor) -> Point:
    """The candidate ``optimize_for`` picks from the front (see the module docstring)."""
    front = pareto_front(points)
    if not front:
        raise ValueError("no finished trial to choose from")
    best = max(point.value for point in front)
    eligible = [point for point in front if point.value >= best - TOLERANCE[optimize_for] - 1e-12]
    return eligible[0]
