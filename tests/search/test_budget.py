"""Budget accounting and stopping rules of the search (pure)."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autovision.search.budget import (
    BUDGET_UNIT_SECONDS,
    MIN_STEPS,
    BudgetGate,
    BudgetPlan,
    Claim,
    committed,
    final_fit_affordable,
    finish_steps,
    may_start,
    milli_node_hours,
    minimum_budget,
    smallest_trial_seconds,
    stalled,
)


def test_milli_node_hours_round_up_like_billing() -> None:
    assert milli_node_hours(0) == 0
    assert milli_node_hours(3.6) == 1
    assert milli_node_hours(3.61) == 2
    assert milli_node_hours(180) == 50


def test_plan_keeps_a_share_for_the_final_fit() -> None:
    plan = BudgetPlan.of(50)
    assert plan.total_seconds == pytest.approx(180)
    assert plan.search_seconds == pytest.approx(144)
    assert not plan.search_exhausted(143.9)
    assert plan.search_exhausted(144)
    assert plan.remaining(150) == pytest.approx(30)
    assert plan.remaining(200) == 0
    unbounded = BudgetPlan.of(None)
    assert unbounded.search_seconds == math.inf
    assert not unbounded.search_exhausted(1e9)


def test_final_fit_affordable_scales_with_the_extra_images() -> None:
    # 10 epochs of (800 + 200) // 100 = 10 steps at 2 s, with the margin and a checkpoint's step: 252 s
    assert final_fit_affordable(252.0, 2.0, 10, train_images=800, validation_images=200, batch=100)
    assert not final_fit_affordable(251.9, 2.0, 10, train_images=800, validation_images=200, batch=100)
    assert not final_fit_affordable(math.inf, 2.0, 10, train_images=800, validation_images=0, batch=100)


def test_stalled_after_patience_trials_without_improvement() -> None:
    assert not stalled([], patience=3, min_delta=0.001)
    assert not stalled([0.5, 0.6, 0.6, 0.6], patience=3, min_delta=0.001)
    assert stalled([0.5, 0.6, 0.6, 0.6, 0.6005], patience=3, min_delta=0.001)
    assert not stalled([0.5, 0.6, 0.6, 0.6, 0.62], patience=3, min_delta=0.001)
    assert not stalled([0.5, 1.0, 1.0], patience=3, min_delta=0.001), "a perfect score alone does not stop"
    assert stalled([0.5, 1.0, 1.0, 1.0, 1.0], patience=3, min_delta=0.001)


class FakeClock:
    """Simulated seconds: they pass only when the simulation says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class MemoryLedger:
    """The study's claims, in memory: one slot per trial."""

    slots: list[Claim] = field(default_factory=list)

    def claims(self) -> list[Claim]:
        return list(self.slots)

    def slot(self, index: int) -> _Slot:
        return _Slot(self, index)


@dataclass
class _Slot:
    ledger: MemoryLedger
    index: int

    def claims(self) -> list[Claim]:
        return self.ledger.claims()

    def publish(self, claim: Claim) -> None:
        self.ledger.slots[self.index] = claim


@dataclass
class Trial:
    gate: BudgetGate
    slot: int
    spent: float = 0.0
    steps: list[float] = field(default_factory=list)


def simulate(
    limit: float, workers: int, *, base: float, jitter: list[float], finish: float, epoch_steps: int
) -> tuple[float, int]:
    """Workers run trials of steps costing ``base`` times a factor in [1, 1.2) until the gate says no.

    Paces are known from earlier trials of the configuration (``base``), as in a
    search past its first trial. Each epoch of ``epoch_steps`` steps ends with a
    validation, and a trial stopped inside an epoch pays its finish: both cost
    ``finish`` steps. Returns what was spent in all and how many trials
    produced a validated model.
    """
    clock, ledger = FakeClock(), MemoryLedger()
    smallest = smallest_trial_seconds(base, 0.0, finish)
    events: list[tuple[float, int, int]] = [(0.0, worker, -1) for worker in range(workers)]  # (time, worker, trial)
    trials: list[Trial] = []
    validated, draws = 0, 0
    while events:
        clock.now, worker, index = heapq.heappop(events)
        if index < 0:  # the worker is free: start a trial if one fits
            if not may_start(limit, ledger.claims(), clock.now, smallest):
                continue
            ledger.slots.append(Claim(0.0, 0.0, clock.now, True))
            gate = BudgetGate(limit, ledger.slot(len(ledger.slots) - 1), clock, finish, base)
            trials.append(Trial(gate, len(trials)))
            index = len(trials) - 1
        trial = trials[index]
        pace = sum(trial.steps) / len(trial.steps) if trial.steps else None
        left = epoch_steps - len(trial.steps) % epoch_steps
        if trial.gate.may_step(trial.spent, pace, left):
            cost = base * (1 + jitter[draws % len(jitter)])
            draws += 1
            trial.steps.append(cost)
            trial.spent += cost
            if len(trial.steps) % epoch_steps == 0:  # the epoch's validation
                trial.spent += finish * base
                cost += finish * base
            heapq.heappush(events, (clock.now + cost, worker, index))
            continue
        if left < epoch_steps:  # stopped inside an epoch: validation and latency, as reserved
            trial.spent += finish * base
            clock.now += finish * base
        validated += bool(trial.steps)
        ledger.slots[trial.slot] = Claim(trial.spent, 0.0, clock.now, False)
        heapq.heappush(events, (clock.now, worker, -1))
    return sum(trial.spent for trial in trials), validated


@settings(max_examples=200, deadline=None)
@given(
    limit=st.floats(1.0, 300.0),
    workers=st.integers(1, 8),
    base=st.floats(0.05, 3.0),
    jitter=st.lists(st.floats(0.0, 0.2, exclude_max=True), min_size=1, max_size=20),
    validation_images=st.integers(0, 2_000),
    epoch_steps=st.integers(1, 200),
)
def test_spending_never_exceeds_the_budget(
    *, limit: float, workers: int, base: float, jitter: list[float], validation_images: int, epoch_steps: int
) -> None:
    finish = finish_steps(64, validation_images)
    spent, validated = simulate(limit, workers, base=base, jitter=jitter, finish=finish, epoch_steps=epoch_steps)
    assert spent <= limit + BUDGET_UNIT_SECONDS
    if smallest_trial_seconds(base * 1.2, 0.0, finish) <= limit:
        assert validated >= 1, "the smallest configuration fits, so the search ends with a validated model"


def test_a_claim_counts_what_a_late_worker_has_run_since() -> None:
    claim = Claim(spent=10.0, ahead=2.0, at=100.0, open=True)
    assert committed([claim], now=101.0) == 12.0
    assert committed([claim], now=105.0) == 15.0, "a worker late to report has spent at least the time since"
    assert committed([Claim(10.0, 2.0, 100.0, open=False)], now=200.0) == 10.0


def test_a_worker_that_checks_later_sees_the_earlier_claim() -> None:
    clock, ledger = FakeClock(), MemoryLedger([Claim(0.0, 0.0, 0.0, True), Claim(0.0, 0.0, 0.0, True)])
    first = BudgetGate(10.0, ledger.slot(0), clock, finish=0.0, prior=1.0)
    second = BudgetGate(10.0, ledger.slot(1), clock, finish=0.0, prior=1.0)
    assert first.may_step(0.0, None, 100)  # claims the next check's worth: 1 step of 1.25 s
    assert sum(claim.ahead for claim in ledger.claims()) <= 10.0
    for _ in range(20):
        second.may_step(0.0, 1.0, 100)
    assert committed(ledger.claims(), clock()) <= 10.0


def test_an_unmeasured_configuration_takes_one_step_to_measure_itself() -> None:
    clock, ledger = FakeClock(), MemoryLedger([Claim(0.0, 0.0, 0.0, True)])
    gate = BudgetGate(10.0, ledger.slot(0), clock, finish=3.0)
    assert gate.may_step(0.0, None, 100)
    assert gate.granted == 0, "one step at a time until its pace is known"
    assert gate.may_step(1.0, 0.1, 100)
    assert gate.granted > 0, "then a check's worth of steps"


def test_a_stretch_of_steps_ends_at_the_epoch_end() -> None:
    clock, ledger = FakeClock(), MemoryLedger([Claim(0.0, 0.0, 0.0, True)])
    gate = BudgetGate(1_000.0, ledger.slot(0), clock, finish=3.0, prior=0.01)
    assert gate.may_step(0.0, None, 4)
    assert gate.granted == 3, "the rest of the epoch, not a check's worth (160 steps)"
    assert ledger.claims()[0].ahead == pytest.approx(4 * 0.0125 + 3 * 0.01), "one validation is reserved"


def test_the_minimum_budget_buys_the_smallest_trial_and_the_final_fit_share() -> None:
    smallest = smallest_trial_seconds(1.0, 2.0, finish=4.0)
    assert smallest == 2.0 + MIN_STEPS * 1.25 + 4.0
    assert minimum_budget(smallest) * BUDGET_UNIT_SECONDS * 0.8 >= smallest
    assert (minimum_budget(smallest) - 1) * BUDGET_UNIT_SECONDS * 0.8 < smallest


def test_a_stretch_that_runs_late_is_checked_again_at_every_step() -> None:
    clock, ledger = FakeClock(), MemoryLedger([Claim(0.0, 0.0, 0.0, True)])
    gate = BudgetGate(10.0, ledger.slot(0), clock, finish=0.0, prior=0.1)
    assert gate.may_step(0.0, None, 100)
    assert gate.granted > 1, "a check's worth of 0.125 s steps"
    clock.now = 9.0  # the first step took 9 s: the device slowed down
    assert gate.may_step(9.0, 0.1, 99)
    assert gate.granted == 7, "checked again: only the 8 steps of 0.125 s that fit in the 1 s left"
    assert committed(ledger.claims(), clock()) <= 10.0
