"""The rollout state machine: promote, wait, pause, roll back, abort, from counts and time alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autovision.resources import RolloutPhase, RolloutSpec, RolloutStatus
from autovision.serving.traffic import ModelStats, ShadowStats, TrafficStats
from autovision_operator import rollout as ro

T0 = dt.datetime(2026, 12, 4, 12, 0, 0, tzinfo=dt.UTC)


def spec(**fields: Any) -> RolloutSpec:
    values: dict[str, Any] = {"steps": [10, 50, 100], "gate": {"minRequests": 10, "maxErrorRate": 0.1}}
    return RolloutSpec.model_validate(values | fields)


def answered(requests: int, errors: int = 0, latency_ms: float = 5.0) -> TrafficStats:
    stats = ModelStats()
    for index in range(requests):
        stats.observe(latency_ms, ok=index >= errors)
    return TrafficStats(models={"run-b": stats, "run-a": ModelStats(requests=requests)})


def shadowed(compared: int, agreed: int, errors: int = 0) -> TrafficStats:
    return TrafficStats(shadow=ShadowStats(run="run-b", compared=compared, agreed=agreed, errors=errors))


def ready(stats: TrafficStats) -> ro.Observation:
    return ro.Observation(candidate_ready=True, stats=stats)


def started(rollout_spec: RolloutSpec) -> RolloutStatus:
    return ro.start(rollout_spec, "run-b", "run-a", T0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_a_candidate_that_passes_every_step_is_promoted() -> None:
    rollout_spec = spec()
    state = started(rollout_spec)
    assert (state.phase, state.percent, ro.split(state)) == (RolloutPhase.PROGRESSING, 10, {"run-a": 90, "run-b": 10})
    state = ro.advance(rollout_spec, state, ready(answered(9)), at(1))
    assert (state.step, state.message) == (0, "run-b answered 9 of 10 requests")
    for step, percent in ((1, 50), (2, 100)):
        state = ro.advance(rollout_spec, state, ready(answered(10)), at(step * 10))
        assert (state.step, state.percent, state.step_since) == (step, percent, at(step * 10))
    assert ro.split(state) == {"run-b": 100}
    state = ro.advance(rollout_spec, state, ready(answered(10)), at(40))
    assert (state.phase, ro.split(state), ro.needed(state)) == (RolloutPhase.PROMOTED, {"run-b": 100}, {"run-b"})
    assert ro.advance(rollout_spec, state, ready(answered(0)), at(50)) == state  # done stays done


def test_errors_or_latency_beyond_the_gate_roll_back() -> None:
    rollout_spec = spec(gate={"minRequests": 10, "maxErrorRate": 0.1, "maxP99Ms": 100})
    failing = ro.advance(rollout_spec, started(rollout_spec), ready(answered(10, errors=2)), at(1))
    assert (failing.phase, failing.percent) == (RolloutPhase.ROLLED_BACK, 0)
    assert failing.message == "run-b failed 20.0% of requests at 10 %; back to run-a"
    assert (ro.split(failing), ro.needed(failing)) == ({"run-a": 100}, {"run-a"})
    slow = ro.advance(rollout_spec, started(rollout_spec), ready(answered(10, latency_ms=400)), at(1))
    assert slow.phase is RolloutPhase.ROLLED_BACK
    assert "p99 latency 500 ms > 100 ms" in slow.message


def test_a_disagreeing_candidate_is_rolled_back_while_it_only_shadows() -> None:
    rollout_spec = spec(gate={"minRequests": 10, "minAgreement": 0.9})
    state = started(rollout_spec)
    assert (state.percent, ro.split(state)) == (0, {"run-a": 100})
    assert ro.shadowing(state, candidate_ready=True) == "run-b"
    assert ro.shadowing(state, candidate_ready=False) is None  # copies to pods that cannot answer are noise
    state = ro.advance(rollout_spec, state, ready(shadowed(5, 5)), at(1))
    assert state.phase is RolloutPhase.PROGRESSING
    agreeing = ro.advance(rollout_spec, state, ready(shadowed(10, 9)), at(2))
    assert (agreeing.step, agreeing.percent) == (1, 10)
    disagreeing = ro.advance(rollout_spec, state, ready(shadowed(10, 6)), at(2))
    assert disagreeing.phase is RolloutPhase.ROLLED_BACK
    assert "agreed with run-a on 60.0% (< 90.0%)" in disagreeing.message
    failing = ro.advance(rollout_spec, state, ready(shadowed(8, 8, errors=2)), at(2))
    assert failing.phase is RolloutPhase.ROLLED_BACK


def test_a_candidate_never_ready_rolls_back_after_the_timeout() -> None:
    rollout_spec = spec(readinessTimeoutSeconds=60)
    unready = ro.Observation(candidate_ready=False, stats=answered(100))
    waiting = ro.advance(rollout_spec, started(rollout_spec), unready, at(60))
    assert (waiting.phase, waiting.message) == (RolloutPhase.PROGRESSING, "waiting for run-b's pods to be ready")
    timed_out = ro.advance(rollout_spec, waiting, unready, at(61))
    assert timed_out.phase is RolloutPhase.ROLLED_BACK
    assert timed_out.message == "run-b's pods were not all ready within 60 s; back to run-a"


def test_pause_holds_a_step_and_abort_rolls_back_until_cleared() -> None:
    state = ro.advance(spec(), started(spec()), ready(answered(10)), at(1))
    paused = ro.advance(spec(paused=True), state, ready(answered(1000)), at(2))
    assert (paused.phase, paused.step, paused.percent) == (RolloutPhase.PAUSED, 1, 50)
    assert ro.needed(paused) == {"run-a", "run-b"}
    resumed = ro.advance(spec(), paused, ready(answered(10)), at(3))
    assert (resumed.phase, resumed.percent) == (RolloutPhase.PROGRESSING, 100)
    aborted = ro.advance(spec(abort=True), resumed, ready(answered(10)), at(4))
    assert (aborted.phase, ro.split(aborted)) == (RolloutPhase.ABORTED, {"run-a": 100})
    assert ro.advance(spec(abort=True), aborted, ready(answered(10)), at(5)) == aborted
    again = ro.advance(spec(), aborted, ready(answered(0)), at(6))
    assert (again.phase, again.step, again.started) == (RolloutPhase.PROGRESSING, 0, at(6))


def test_a_rolled_back_rollout_is_retried_by_setting_then_clearing_abort() -> None:
    rolled_back = ro.advance(spec(), started(spec()), ready(answered(10, errors=5)), at(1))
    assert ro.advance(spec(), rolled_back, ready(answered(10)), at(2)) == rolled_back
    aborted = ro.advance(spec(abort=True), rolled_back, ready(answered(10)), at(2))
    assert aborted.phase is RolloutPhase.ABORTED
    assert ro.advance(spec(), aborted, ready(answered(0)), at(3)).phase is RolloutPhase.PROGRESSING
