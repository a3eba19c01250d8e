"""Budget accounting and stopping rules of the search (pure: numbers in, decisions out).

A budget is measured device time: the seconds every trial actually trained,
validated and measured its latency, with the decoding of the images it was the
first to need, summed over all workers, plus the final fit. The search may overrun
its share by at most the epoch each worker is in when the share runs out: trials
check the budget after every epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SECONDS_PER_MILLI_NODE_HOUR = 3.6
# Share of the budget kept back for the final fit on train + validation.
FINAL_FIT_SHARE = 0.2


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
        """What the search may spend before it stops starting trials and epochs."""
        if self.total_seconds is None:
            return math.inf
        return self.total_seconds * (1 - self.final_fit_share)

    def search_exhausted(self, spent: float) -> bool:
        """Whether the search has spent its share."""
        return spent >= self.search_seconds

    def remaining(self, spent: float) -> float:
        """What is left of the whole budget."""
        return math.inf if self.total_seconds is None else max(0.0, self.total_seconds - spent)


def final_fit_affordable(
    remaining_seconds: float, seconds_per_epoch: float, epochs: int, train_images: int, validation_images: int
) -> bool:
    """Whether retraining on train + validation for ``epochs`` fits in what is left.

    An epoch over train + validation costs the trial's measured seconds per epoch,
    scaled by how many more images there are.
    """
    if train_images == 0 or validation_images == 0:
        return False
    estimate = seconds_per_epoch * epochs * (train_images + validation_images) / train_images
    return estimate <= remaining_seconds


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
