"""The routing table's validation and split, and the mergeable statistics the gateway keeps."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from autovision.serving.traffic import (
    LATENCY_BUCKETS_MS,
    Backend,
    ModelStats,
    Routes,
    Shadow,
    ShadowStats,
    TrafficStats,
    sticky_draw,
)


def _routes(*percents: int, shadow: str | None = None) -> Routes:
    backends = tuple(Backend(run=f"run-{i}", triton_url=f"triton-{i}:8000", percent=p) for i, p in enumerate(percents))
    return Routes(backends=backends, shadow=Shadow(run=shadow, triton_url="s:8000") if shadow else None)


@pytest.mark.parametrize(
    ("percents", "shadow", "message"),
    [
        ((90, 5), None, "sum to 95"),
        ((50, 60), None, "sum to 110"),
        ((100,), "run-0", "also a primary"),
    ],
)
def test_inconsistent_routes_are_refused(percents: tuple[int, ...], shadow: str | None, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _routes(*percents, shadow=shadow)


def test_a_run_twice_in_the_split_is_refused() -> None:
    twice = (Backend(run="a", triton_url="x:1", percent=50), Backend(run="a", triton_url="y:1", percent=50))
    with pytest.raises(ValidationError, match="appears twice"):
        Routes(backends=twice)


def test_the_observed_split_follows_the_percentages() -> None:
    routes = _routes(90, 0, 10)
    rng = random.Random(7)
    picks = [routes.pick(rng.random()).run for _ in range(20_000)]
    assert picks.count("run-1") == 0
    assert abs(picks.count("run-2") / len(picks) - 0.10) < 0.01
    assert routes.pick(0.0).run == "run-0"
    assert routes.pick(0.999999).run == "run-2"


def test_a_sticky_value_keeps_one_backend_and_values_spread() -> None:
    routes = _routes(50, 50)
    assert {routes.pick(sticky_draw("client-7")).run for _ in range(5)} == {routes.pick(sticky_draw("client-7")).run}
    runs = [routes.pick(sticky_draw(f"client-{i}")).run for i in range(2000)]
    assert 0.45 < runs.count("run-0") / len(runs) < 0.55


def test_latency_quantiles_come_from_the_histogram() -> None:
    stats = ModelStats()
    for latency in [4.0] * 98 + [40.0, 40.0]:
        stats.observe(latency, ok=True)
    stats.observe(1e6, ok=False)
    assert stats.requests == 101
    assert stats.errors == 1
    assert stats.latency_quantile_ms(0.5) == 5
    assert stats.latency_quantile_ms(0.99) == 50
    assert stats.latency_quantile_ms(1.0) == LATENCY_BUCKETS_MS[-1]
    assert ModelStats().latency_quantile_ms(0.99) is None


def test_stats_of_two_gateways_merge() -> None:
    first, second = TrafficStats(), TrafficStats()
    first.models["a"] = ModelStats()
    first.models["a"].observe(3.0, ok=True)
    second.models["a"] = ModelStats()
    second.models["a"].observe(300.0, ok=False)
    second.models["b"] = ModelStats()
    second.models["b"].observe(1.0, ok=True)
    first.shadow, second.shadow = ShadowStats(run="s"), ShadowStats(run="s")
    first.shadow.observe("cat", "cat")
    second.shadow.observe("cat", "dog")
    second.shadow.observe("cat", None)
    first.shadow.drop()
    merged = TrafficStats.model_validate_json(first.merged(second).model_dump_json())
    assert merged.models["a"].requests == 2
    assert merged.models["a"].error_rate == 0.5
    assert merged.models["a"].latency_quantile_ms(1.0) == 300
    assert merged.models["b"].requests == 1
    assert merged.shadow is not None
    assert (merged.shadow.compared, merged.shadow.agreement, merged.shadow.errors, merged.shadow.dropped) == (
        2,
        0.5,
        1,
        1,
    )
