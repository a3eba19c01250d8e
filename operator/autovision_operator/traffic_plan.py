"""Which models a ModelDeployment serves, in what shares, now: its spec, its rollout and its gateway, decided purely.

``spec.traffic`` is served as written. ``spec.modelRef`` names one model: when it is
not the one the gateway sends everything to (the stable run) and ``spec.rollout`` is
set, a gated rollout (``rollout``) replaces it step by step; without ``spec.rollout``
(or on the first deployment) it is served at 100 % straight away. Either way the
handler hands the gateway a new table only once every model in it is ready, so a
model is never routed to before it loaded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from autovision.resources import ModelDeploymentSpec, RolloutPhase, RolloutStatus
from autovision.serving.traffic import Routes, TrafficStats
from autovision_operator import rollout as rollouts


@dataclass(frozen=True)
class Plan:
    """What to serve: percent per run, the shadow, every run whose Triton must run, and the rollout's state."""

    split: dict[str, int]
    shadow: str | None
    runs: frozenset[str]
    rollout: RolloutStatus | None


def applied_split(table: Routes | None) -> dict[str, int]:
    """Percent per run of the routing table the gateway has (empty before there is a gateway)."""
    return {backend.run: backend.percent for backend in table.backends} if table else {}


def stable_run(table: Routes | None, previous: RolloutStatus | None) -> str | None:
    """The run that answers every request: a rollout's under way, else the gateway's if it has only one model."""
    if previous is not None and rollouts.is_active(previous):
        return previous.stable
    served = [run for run, percent in applied_split(table).items() if percent > 0]
    return served[0] if len(served) == 1 else None


def plan(  # noqa: PLR0917 - everything the decision depends on, explicitly
    spec: ModelDeploymentSpec,
    target: str | None,
    applied: Routes | None,
    previous: RolloutStatus | None,
    seen: rollouts.Observation,
    now: dt.datetime,
) -> Plan:
    """What to serve now; ``target`` is ``spec.modelRef``'s run (None with ``spec.traffic``).

    ``seen.stats`` are the counts of the gateway pods routing by ``applied``; they
    are judged only when ``applied`` is the table of the rollout's current stage.
    """
    shadow = spec.shadow.training_job if spec.shadow else None
    if target is None:
        split = {item.training_job: item.percent for item in spec.traffic or []}
        return Plan(split, shadow, frozenset({*split, *([shadow] if shadow else [])}), _stopped(previous, now))
    stable = stable_run(applied, previous)
    if spec.rollout is None or stable is None or stable == target:
        runs = frozenset({target, *([shadow] if shadow else [])})
        return Plan({target: 100}, shadow, runs, _stopped(previous, now))
    if previous is not None and (previous.candidate, previous.stable) == (target, stable):
        current = previous
    else:
        current = rollouts.start(spec.rollout, target, stable, now)
    stage_table = (rollouts.split(current), rollouts.shadowing(current, seen.candidate_ready))
    if (applied_split(applied), applied.shadow.run if applied and applied.shadow else None) != stage_table:
        seen = rollouts.Observation(seen.candidate_ready, TrafficStats())
    advanced = rollouts.advance(spec.rollout, current, seen, now)
    split, copy = rollouts.split(advanced), rollouts.shadowing(advanced, seen.candidate_ready)
    return Plan(split, copy, frozenset(rollouts.needed(advanced)), advanced)


def _stopped(previous: RolloutStatus | None, now: dt.datetime) -> RolloutStatus | None:
    """A rollout the spec no longer asks for: aborted if it was under way, kept as a record otherwise."""
    if previous is None or not rollouts.is_active(previous):
        return previous
    message = f"stopped: the spec no longer rolls out {previous.candidate} (at {now:%Y-%m-%dT%H:%M:%SZ})"
    return previous.model_copy(update={"phase": RolloutPhase.ABORTED, "percent": 0, "message": message})
