"""A gated rollout as a pure state machine: where it stands, the gateways' counts in, the next state out.

A rollout replaces the ``stable`` run (the one the gateway sends all requests to)
by ``spec.modelRef.trainingJob``, the ``candidate``, through stages: with
``gate.minAgreement`` first a shadowing stage at 0 % (the candidate gets a copy of
every request and answers nobody, while its top-1 agreement with the stable model
is counted), then each of ``spec.rollout.steps`` percent. A stage passes once the
candidate answered (or shadowed) ``gate.minRequests`` requests within the gate;
the last passing promotes the candidate. A failing gate, or candidate pods not all
ready within ``readinessTimeoutSeconds`` of the start, rolls back to ``stable``.
``spec.rollout.paused`` holds a stage, ``abort`` rolls back at once; clearing
``abort`` starts the rollout again.

The counts judged are those of the gateway pods that route by the current stage's
table (the handler reads only those): each stage's table is new, so its counts
start from zero. Agreement can only be counted while the candidate shadows: a
model that answers a request is a primary, and the gateway compares only a
shadow's answers with the primary's. Nothing here does I/O; ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from autovision.resources import RolloutPhase, RolloutSpec, RolloutStatus
from autovision.serving.traffic import TrafficStats

ACTIVE = (RolloutPhase.PROGRESSING, RolloutPhase.PAUSED)


def stages(spec: RolloutSpec) -> list[int]:
    """The candidate's percent at each stage: 0 while it shadows (with ``gate.minAgreement``), then the steps."""
    return ([0] if spec.gate.min_agreement is not None else []) + list(spec.steps)


def is_active(rollout: RolloutStatus | None) -> bool:
    """Whether a rollout is under way (progressing or paused), so that its stable run is still the one to return to."""
    return rollout is not None and rollout.phase in ACTIVE


def start(spec: RolloutSpec, candidate: str, stable: str, now: dt.datetime) -> RolloutStatus:
    """A new rollout of ``candidate`` against ``stable``, at its first stage."""
    first = stages(spec)[0]
    return RolloutStatus(
        candidate=candidate,
        stable=stable,
        phase=RolloutPhase.PROGRESSING,
        step=0,
        percent=first,
        step_since=now,
        started=now,
        message=f"waiting for {candidate}'s pods to be ready",
    )


@dataclass(frozen=True)
class Observation:
    """What the handler saw this time: the candidate's pods, and the gateways' counts under the current table."""

    candidate_ready: bool
    stats: TrafficStats


def advance(  # noqa: PLR0911 - one return per transition of the state machine
    spec: RolloutSpec, rollout: RolloutStatus, seen: Observation, now: dt.datetime
) -> RolloutStatus:
    """The rollout's next state: promote, wait, pause, resume, roll back or abort.

    A finished rollout (promoted, rolled back, aborted) stays as it is, except that an
    aborted one whose ``abort`` was cleared starts again, and a rolled-back one is
    marked aborted when ``abort`` is set (so that clearing it retries).
    """
    if rollout.phase is RolloutPhase.ABORTED:
        return rollout if spec.abort else start(spec, rollout.candidate, rollout.stable, now)
    if rollout.phase is RolloutPhase.ROLLED_BACK:
        return _ended(rollout, RolloutPhase.ABORTED, rollout.message) if spec.abort else rollout
    if rollout.phase is RolloutPhase.PROMOTED:
        return rollout
    if spec.abort:
        return _ended(rollout, RolloutPhase.ABORTED, f"aborted by spec.rollout.abort; back to {rollout.stable}")
    if spec.paused:
        message = f"paused by spec.rollout.paused at {rollout.percent} %"
        return rollout.model_copy(update={"phase": RolloutPhase.PAUSED, "message": message})
    resumed = rollout.model_copy(update={"phase": RolloutPhase.PROGRESSING})
    if not seen.candidate_ready:
        waited = (now - rollout.started).total_seconds()
        if waited > spec.readiness_timeout_seconds:
            message = f"{rollout.candidate}'s pods were not all ready within {spec.readiness_timeout_seconds} s"
            return _ended(rollout, RolloutPhase.ROLLED_BACK, f"{message}; back to {rollout.stable}")
        return resumed.model_copy(update={"message": f"waiting for {rollout.candidate}'s pods to be ready"})
    verdict = judge(spec, rollout, seen.stats)
    if verdict.failed:
        return _ended(rollout, RolloutPhase.ROLLED_BACK, f"{verdict.message}; back to {rollout.stable}")
    if not verdict.passed:
        return resumed.model_copy(update={"message": verdict.message})
    percents = stages(spec)
    if rollout.step + 1 >= len(percents):
        return _ended(rollout, RolloutPhase.PROMOTED, f"{rollout.candidate} promoted: {verdict.message}")
    step = rollout.step + 1
    message = f"{verdict.message}; now at {percents[step]} %"
    return resumed.model_copy(update={"step": step, "percent": percents[step], "step_since": now, "message": message})


@dataclass(frozen=True)
class Verdict:
    """The gate's answer at a stage: passed, failed, or neither yet (too few requests), and why."""

    passed: bool
    failed: bool
    message: str


def judge(spec: RolloutSpec, rollout: RolloutStatus, stats: TrafficStats) -> Verdict:  # noqa: PLR0911 - one verdict each
    """Whether the candidate's counts at this stage pass the gate, fail it, or are too few to tell."""
    gate, candidate = spec.gate, rollout.candidate
    if rollout.percent == 0:
        shadow = stats.shadow if stats.shadow is not None and stats.shadow.run == candidate else None
        seen = shadow.compared + shadow.errors if shadow else 0
        if shadow is None or seen < gate.min_requests:
            return Verdict(False, False, f"{candidate} shadowed {seen} of {gate.min_requests} requests")
        error_rate, agreement = shadow.errors / seen, shadow.agreement or 0.0
        if error_rate > gate.max_error_rate:
            return Verdict(False, True, f"{candidate} failed {error_rate:.1%} of shadowed requests")
        if gate.min_agreement is not None and agreement < gate.min_agreement:
            return Verdict(
                False, True, f"{candidate} agreed with {rollout.stable} on {agreement:.1%} (< {gate.min_agreement:.1%})"
            )
        return Verdict(True, False, f"{candidate} agreed with {rollout.stable} on {agreement:.1%} of {seen} requests")
    model = stats.models.get(candidate)
    if model is None or model.requests < gate.min_requests:
        answered = model.requests if model else 0
        return Verdict(False, False, f"{candidate} answered {answered} of {gate.min_requests} requests")
    p99 = model.latency_quantile_ms(0.99)
    if model.error_rate > gate.max_error_rate:
        return Verdict(False, True, f"{candidate} failed {model.error_rate:.1%} of requests at {rollout.percent} %")
    if gate.max_p99_ms is not None and p99 is not None and p99 > gate.max_p99_ms:
        return Verdict(False, True, f"{candidate}'s p99 latency {p99:g} ms > {gate.max_p99_ms:g} ms")
    return Verdict(True, False, f"{candidate} passed at {rollout.percent} % over {model.requests} requests")


def split(rollout: RolloutStatus) -> dict[str, int]:
    """Percent per run the gateway should route by, for a rollout in any phase."""
    if rollout.phase is RolloutPhase.PROMOTED:
        return {rollout.candidate: 100}
    if rollout.phase in ACTIVE and rollout.percent > 0:
        if rollout.percent == 100:
            return {rollout.candidate: 100}
        return {rollout.stable: 100 - rollout.percent, rollout.candidate: rollout.percent}
    return {rollout.stable: 100}


def shadowing(rollout: RolloutStatus, candidate_ready: bool) -> str | None:
    """The run the gateway should copy requests to: the candidate, while it is ready at a 0 % stage."""
    return rollout.candidate if rollout.phase in ACTIVE and rollout.percent == 0 and candidate_ready else None


def needed(rollout: RolloutStatus) -> set[str]:
    """The runs whose Triton must run: both while the rollout is under way, the survivor after."""
    if rollout.phase in ACTIVE:
        return {rollout.stable, rollout.candidate}
    return set(split(rollout))


def _ended(rollout: RolloutStatus, phase: RolloutPhase, message: str) -> RolloutStatus:
    """A finished rollout: the candidate at 100 % if promoted, else at 0 %."""
    percent = 100 if phase is RolloutPhase.PROMOTED else 0
    return rollout.model_copy(update={"phase": phase, "percent": percent, "message": message})
