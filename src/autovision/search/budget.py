"""Budget accounting and stopping rules of the search (pure: numbers in, decisions out).

A budget is measured device time: the seconds every trial actually trained,
validated and measured its latency, with the decoding of the images it was the
first to need, summed over all workers, plus the final fit (a data-parallel
final fit counts the seconds of each of its processes). It is a ceiling:
every worker publishes a ``Claim`` (what its trial has spent, and what it will
spend before it reports again, its validation and latency measurement included)
and takes its next stretch of steps only when everything claimed by every worker
still fits (``BudgetGate``). What is spent stays within the budget up to one
``BUDGET_UNIT_SECONDS`` (a milli node-hour, the unit it is billed in) as long as
a step costs no more than the slowest step measured so far times ``PACE_MARGIN``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

SECONDS_PER_MILLI_NODE_HOUR = 3.6
# The stated rounding unit of the ceiling: one milli node-hour.
BUDGET_UNIT_SECONDS = SECONDS_PER_MILLI_NODE_HOUR
# Share of the budget kept back for the final fit on train + validation.
FINAL_FIT_SHARE = 0.2
# How often a trial publishes its claim and checks the budget (seconds of steps).
CHECK_SECONDS = 2.0
# A step is assumed to cost up to this much more than the slowest one measured.
PACE_MARGIN = 1.25
# A validation image costs about this share of a training image (forward only).
FORWARD_SHARE = 0.5
# Batch-1 forwards of the latency measurement (warm-up included).
LATENCY_FORWARDS = 35
# The fewest training steps worth validating: less learns nothing a user could use.
MIN_STEPS = 8


def budget_seconds(milli_node_hours: float) -> float:
    """Seconds of device time in a budget of milli node-hours."""
    return milli_node_hours * SECONDS_PER_MILLI_NODE_HOUR


def milli_node_hours(seconds: float) -> int:
    """Seconds of device time as whole milli node-hours, rounded up (as AutoML bills)."""
    return math.ceil(seconds / SECONDS_PER_MILLI_NODE_HOUR - 1e-9)


@dataclass(frozen=True)
class BudgetPlan:
    """How a budget is split between the search and the final fit; unbounded when ``total_seconds`` is None."""

    total_seconds: float | None
    final_fit_share: float = FINAL_FIT_SHARE

    @classmethod
    def of(cls, budget_milli_node_hours: int | None) -> BudgetPlan:
        """The plan for a budget in milli node-hours (None: no budget)."""
        return cls(None if budget_milli_node_hours is None else budget_seconds(budget_milli_node_hours))

    @property
    def search_seconds(self) -> float:
        """What the search may spend before it stops starting trials and steps."""
        if self.total_seconds is None:
            return math.inf
        return self.total_seconds * (1 - self.final_fit_share)

    def search_exhausted(self, spent: float) -> bool:
        """Whether the search has spent its share."""
        return spent >= self.search_seconds

    def remaining(self, spent: float) -> float:
        """What is left of the whole budget."""
        return math.inf if self.total_seconds is None else max(0.0, self.total_seconds - spent)


def finish_steps(batch_size: int, validation_images: int) -> float:
    """What a trial needs after its last step, in training steps: the validation pass and the latency
    measurement (forwards of the same model) and a checkpoint; reserved before the trial starts."""
    forwards = (validation_images + LATENCY_FORWARDS) / max(1, batch_size) * FORWARD_SHARE
    return forwards * PACE_MARGIN + 1.0


def smallest_trial_seconds(step_seconds: float, decode_seconds: float, finish: float) -> float:
    """The cheapest validated model of a configuration: decoding, ``MIN_STEPS`` steps and the finish."""
    return decode_seconds + (MIN_STEPS * PACE_MARGIN + finish) * step_seconds


def minimum_budget(smallest_trial: float) -> int:
    """An estimate of the smallest budget (milli node-hours) that buys one validated model."""
    return milli_node_hours(smallest_trial / (1 - FINAL_FIT_SHARE))


@dataclass(frozen=True)
class Claim:
    """One trial's spending as the study records it: ``spent`` when it reported at ``at``, and ``ahead``,
    what it may spend before its next report (its finish included); ``open`` while it runs."""

    spent: float
    ahead: float
    at: float
    open: bool


def committed(claims: Sequence[Claim], now: float) -> float:
    """Seconds spent or promised: a running trial counts what it claimed, or what it has run since its last
    report if that is more (a late report)."""
    return sum(claim.spent + (max(claim.ahead, now - claim.at) if claim.open else 0.0) for claim in claims)


class Ledger(Protocol):
    """Where workers publish their claims and read everyone's: the shared study."""

    def claims(self) -> list[Claim]:
        """Every trial's claim, this one's included."""
        ...

    def publish(self, claim: Claim) -> None:
        """Record this trial's claim."""


def steps_per_check(step_seconds: float) -> int:
    """Steps taken between two checks: about ``CHECK_SECONDS`` of them, at least one."""
    return max(1, int(CHECK_SECONDS / max(step_seconds, 1e-9)))


class BudgetGate:
    """One trial's permission to take its next training step, against the budget all workers share.

    Before each stretch of steps the trial publishes what it has spent and what
    the stretch and its finish (``finish`` steps) will cost, then reads every
    claim: the stretch is taken only as far as all of them fit in ``limit``.
    Publishing before reading means that of two workers checking at once, the
    later sees the earlier. Before its first step a trial's pace is ``prior``
    (an earlier trial's of the same configuration) or unknown: one step then
    measures it. A stretch that runs late (its steps slower than claimed, as on a
    device another job now shares) is checked again at every step from then on.
    """

    def __init__(
        self, limit: float, ledger: Ledger, clock: Callable[[], float], finish: float, prior: float | None = None
    ) -> None:
        self.limit = limit
        self.ledger = ledger
        self.clock = clock
        self.finish = finish
        self.prior = prior
        self.granted = 0
        self.deadline = 0.0
        self.stopped = False

    def may_step(self, spent: float, step_seconds: float | None, epoch_steps_left: int) -> bool:
        """Whether the trial may take one more step, having spent ``spent`` at ``step_seconds`` a step, with
        ``epoch_steps_left`` steps (this one included) before its epoch ends."""
        if self.granted > 0 and self.clock() <= self.deadline:
            self.granted -= 1
            return True
        measured = step_seconds if step_seconds is not None else self.prior
        pace = 0.0 if measured is None else measured * PACE_MARGIN
        # A stretch ends at its epoch's end at the latest, so it needs one validation: the epoch's or the finish.
        stretch = min(epoch_steps_left, 1 if measured is None else steps_per_check(pace))
        finish = self.finish * (measured or 0.0)
        self.ledger.publish(Claim(spent, stretch * pace + finish, self.clock(), True))
        excess = committed(self.ledger.claims(), self.clock()) - self.limit
        if excess > 0:  # take fewer steps, or none
            stretch -= math.ceil(excess / pace) if pace > 0 else stretch
            if stretch < 1:
                self.ledger.publish(Claim(spent, finish, self.clock(), True))
                self.stopped = True
                return False
            self.ledger.publish(Claim(spent, stretch * pace + finish, self.clock(), True))
        self.granted = stretch - 1
        self.deadline = self.clock() + stretch * pace
        return True


def may_start(limit: float, claims: Sequence[Claim], now: float, smallest_trial: float) -> bool:
    """Whether a new trial could still produce a validated model in what is left."""
    return committed(claims, now) + smallest_trial <= limit


def final_fit_affordable(
    remaining_seconds: float, step_seconds: float, epochs: int, *, train_images: int, validation_images: int, batch: int
) -> bool:
    """Whether retraining on train + validation for ``epochs`` fits, whole, in what is left.

    An epoch over train + validation costs the chosen trial's measured step once
    per batch, with the same margin as a trial's steps and a checkpoint's worth.
    """
    if train_images == 0 or validation_images == 0:
        return False
    steps = epochs * max(1, (train_images + validation_images) // batch)
    return (steps * PACE_MARGIN + 1) * step_seconds <= remaining_seconds


def stalled(values: Sequence[float], patience: int, min_delta: float) -> bool:
    """Early stopping: the last ``patience`` results (in finishing order) improved on the best before them by
    less than ``min_delta``.

    A perfect validation score does not stop the search by itself: on a small
    validation set it is common, and the trials after it may find a faster model.
    """
    if len(values) <= patience:
        return False
    before = max(values[:-patience])
    return max(values[-patience:]) < before + min_delta
