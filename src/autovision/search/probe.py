"""Plan what fits: before a budgeted search starts, measure what its first model would cost.

The probe decodes a sample of the training split and trains ``PROBE_STEPS``
steps of a configuration on this device (the first warms up; the median of the
others is the pace); from them ``autovision.search.budget`` estimates the
smallest budget that buys one validated model. The space's warm start is
probed first; a budget below its estimate starts instead with the first of the
space's cheaper configurations (lower resolution, a smaller or more frozen net,
the fewest epochs) that fits. A budget below every estimate is refused before
any training, with the smallest of them, rather than spent on a model that
cannot be validated.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

from optuna.trial import FixedTrial

from autovision.contract.keys import budget_probe_key
from autovision.progress import Reporter
from autovision.search.budget import finish_steps, minimum_budget, smallest_trial_seconds
from autovision.search.job import ImageCache, SearchJob
from autovision.search.space import Space
from autovision.train.trainer import TrialCheckpoint, train_trial

# Training steps the probe takes: one to warm up, the others timed.
PROBE_STEPS = 4


class BudgetTooSmallError(ValueError):
    """The budget cannot buy one validated model on this data and device."""

    def __init__(self, budget: int, minimum: int) -> None:
        super().__init__(
            f"a budget of {budget} milli node-hours cannot train and validate any model on this dataset and "
            f"device: about {minimum} would (an estimate, measured on {PROBE_STEPS} training steps)"
        )
        self.budget = budget
        self.minimum = minimum


def estimate_minimum_budget(job: SearchJob, images: ImageCache, params: dict[str, Any] | None = None) -> int:
    """An estimate of the smallest budget, in milli node-hours, that buys one validated model of the
    configuration ``params`` stands for (by default the space's warm start)."""
    candidate = job.space.suggest(FixedTrial(params if params is not None else job.space.warm_start() or {}))
    config, size = candidate.config, candidate.preprocess.size
    count = min(images.count("train"), config.batch_size * PROBE_STEPS)
    started = time.perf_counter()
    sample = images.sample("train", size, count)
    per_image = (time.perf_counter() - started) / max(1, count)
    calls: list[float] = []

    def measure(used: float, pace: float | None, left: int) -> bool:
        calls.append(time.perf_counter())
        return len(calls) <= PROBE_STEPS

    probe = TrialCheckpoint(images.storage, budget_probe_key(job.prefix))
    train_trial(sample, None, config, candidate.preprocess, checkpoint=probe, step_guard=measure, device=images.device)
    images.storage.delete_prefix(probe.key)
    # The first step warms up (allocations, kernel choices): the steps after it are the pace.
    steps = [after - before for before, after in itertools.pairwise(calls)][1:]
    step = statistics.median(steps) if steps else calls[-1] - started
    decoding = per_image * (images.count("train") + images.count("validation"))
    finish = finish_steps(config.batch_size, images.count("validation"))
    return minimum_budget(smallest_trial_seconds(step, decoding, finish))


def plan_first_trial(job: SearchJob, images: ImageCache, reporter: Reporter) -> Space:
    """The job's space with a first trial its budget can buy: the warm start, else the first cheaper
    configuration that fits (said in a note); ``BudgetTooSmallError`` when none does."""
    budget = job.budget_milli_node_hours
    if budget is None:
        return job.space
    estimates = [estimate_minimum_budget(job, images)]
    if budget >= estimates[0]:
        return job.space
    for params in job.space.cheaper_starts():
        estimates.append(estimate_minimum_budget(job, images, params))
        if budget >= estimates[-1]:
            candidate = job.space.suggest(FixedTrial(params))
            reporter.note(
                f"a budget of {budget} milli node-hours is below the about {estimates[0]} of the usual first "
                f"model: the search starts with {candidate.architecture} at {candidate.preprocess.size} px "
                f"(about {estimates[-1]})"
            )
            return job.space.starting_with(params)
    raise BudgetTooSmallError(budget, min(estimates))
