"""What a ModelDeployment serves now, decided from its spec, its rollout and its gateway's table."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autovision.resources import ModelDeploymentSpec, RolloutPhase
from autovision.serving.traffic import Backend, ModelStats, Routes, Shadow, TrafficStats
from autovision_operator.rollout import Observation
from autovision_operator.traffic_plan import plan, stable_run

T0 = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)
NOTHING = Observation(candidate_ready=False, stats=TrafficStats())
ROLLOUT = {"steps": [50, 100], "gate": {"minRequests": 5}}


def spec(**fields: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(fields)


def table(split: dict[str, int], shadow: str | None = None) -> Routes:
    backends = tuple(Backend(run=run, triton_url=f"{run}:8000", percent=percent) for run, percent in split.items())
    return Routes(backends=backends, shadow=Shadow(run=shadow, triton_url=f"{shadow}:8000") if shadow else None)


def answered(run: str, requests: int) -> Observation:
    return Observation(candidate_ready=True, stats=TrafficStats(models={run: ModelStats(requests=requests)}))


def test_a_split_is_served_as_written_with_its_shadow() -> None:
    traffic = [{"trainingJob": "run-a", "percent": 90}, {"trainingJob": "run-b", "percent": 10}]
    decided = plan(spec(traffic=traffic, shadow={"trainingJob": "run-c"}), None, None, None, NOTHING, T0)
    assert (decided.split, decided.shadow) == ({"run-a": 90, "run-b": 10}, "run-c")
    assert decided.runs == {"run-a", "run-b", "run-c"}
    assert decided.rollout is None


def test_one_model_without_a_rollout_replaces_the_served_one_outright() -> None:
    decided = plan(spec(modelRef={"trainingJob": "run-b"}), "run-b", table({"run-a": 100}), None, NOTHING, T0)
    assert (decided.split, decided.runs, decided.rollout) == ({"run-b": 100}, frozenset({"run-b"}), None)


def test_the_first_model_is_served_without_a_rollout() -> None:
    first = spec(modelRef={"trainingJob": "run-a"}, rollout=ROLLOUT)
    decided = plan(first, "run-a", None, None, NOTHING, T0)
    assert (decided.split, decided.rollout) == ({"run-a": 100}, None)


def test_a_new_model_with_a_rollout_starts_one_against_the_served_model() -> None:
    gated = spec(modelRef={"trainingJob": "run-b"}, rollout=ROLLOUT)
    decided = plan(gated, "run-b", table({"run-a": 100}), None, NOTHING, T0)
    assert decided.rollout is not None
    assert (decided.rollout.candidate, decided.rollout.stable, decided.rollout.percent) == ("run-b", "run-a", 50)
    assert decided.runs == {"run-a", "run-b"}
    # The gateway still routes by the old table: nothing is judged on its counts.
    again = plan(gated, "run-b", table({"run-a": 100}), decided.rollout, answered("run-b", 99), T0)
    assert again.rollout == decided.rollout.model_copy(update={"message": "run-b answered 0 of 5 requests"})
    # Once it routes by the stage's table, its counts promote.
    stage = table({"run-a": 50, "run-b": 50})
    assert stable_run(stage, decided.rollout) == "run-a"
    promoted = plan(gated, "run-b", stage, decided.rollout, answered("run-b", 5), T0)
    assert promoted.rollout is not None
    assert (promoted.rollout.percent, promoted.split) == (100, {"run-b": 100})
    done = plan(gated, "run-b", table({"run-b": 100}), promoted.rollout, answered("run-b", 5), T0)
    assert done.rollout is not None
    assert (done.rollout.phase, done.runs) == (RolloutPhase.PROMOTED, frozenset({"run-b"}))
    assert plan(gated, "run-b", table({"run-b": 100}), done.rollout, NOTHING, T0).rollout == done.rollout


def test_a_spec_that_stops_asking_for_the_rollout_aborts_it() -> None:
    gated = spec(modelRef={"trainingJob": "run-b"}, rollout=ROLLOUT)
    started = plan(gated, "run-b", table({"run-a": 100}), None, NOTHING, T0).rollout
    back = plan(spec(modelRef={"trainingJob": "run-a"}, rollout=ROLLOUT), "run-a", None, started, NOTHING, T0)
    assert back.rollout is not None
    assert (back.rollout.phase, back.split) == (RolloutPhase.ABORTED, {"run-a": 100})
