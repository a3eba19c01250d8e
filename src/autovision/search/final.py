"""The final model: the chosen configuration retrained on train + validation when the budget allows.

The decision (which trial, whether to retrain) is written to ``final/plan.json``
before any retraining starts, so a run interrupted during the final fit resumes
the same fit from its checkpoint rather than deciding again. Without the budget
for a full retraining, or for a single fixed configuration, the chosen trial's
own best weights are the final model: a retraining cut short would end in the
middle of its learning-rate schedule. With ``final_processes`` > 1 the fit runs
data-parallel (``autovision.train.distributed``); its seconds are summed over
the processes, as the budget counts device time. With several nodes and a
rendezvous, node 0 writes the chosen trial's parameters, the fit's budget and
the number of nodes into the plan, and the other nodes (``join_final_fit``)
read it and train their ranks of the same fit. The fit checkpoints at every
epoch's end and, inside long epochs, every ``CHECKPOINT_EVERY_S``: a node lost
(preempted) during it costs at most that much work once the Job restarts it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from optuna.trial import FixedTrial
from torch import nn

from autovision.contract.keys import final_checkpoint_key, final_plan_key
from autovision.progress import Reporter
from autovision.search.budget import final_fit_affordable
from autovision.search.job import ImageCache, SearchJob
from autovision.search.space import Candidate
from autovision.search.summary import SearchResult
from autovision.search.worker import worker_device
from autovision.storage import Storage
from autovision.train.distributed import train_data_parallel
from autovision.train.trainer import (
    CPU,
    EpochResult,
    TrainConfig,
    TrialCheckpoint,
    TrialResult,
    restore_model,
    train_trial,
)

# How often the other nodes look for node 0's plan of the final fit.
PLAN_POLL_SECONDS = 2.0
# Inside an epoch, the final fit checkpoints this long after its last checkpoint (and at every epoch's end).
CHECKPOINT_EVERY_S = 300.0


class FinalFitPlanMissingError(RuntimeError):
    """Node 0 wrote no plan of the final fit within the rendezvous timeout."""


@dataclass(frozen=True)
class FinalPlan:
    """Which trial becomes the model, and whether it is retrained on train + validation first.

    For the other nodes: the trial's parameters, the fit's budget (device seconds
    over all ranks) and how many nodes train it (1: node 0 alone).
    """

    trial: int
    refit: bool
    params: dict[str, Any]
    max_seconds: float
    nodes: int

    def to_json(self) -> dict[str, Any]:
        """final/plan.json."""
        return {
            "trial": self.trial,
            "refit": self.refit,
            "params": self.params,
            "maxSeconds": self.max_seconds,
            "nodes": self.nodes,
        }


@dataclass(frozen=True)
class FinalModel:
    """The model to evaluate and export, on the CPU, with what producing it cost and the checkpoint holding it."""

    model: nn.Module
    refit: bool
    seconds: float
    epochs_trained: int
    checkpoint: str


def pinned_plan(storage: Storage, prefix: str) -> FinalPlan | None:
    """The plan an earlier, interrupted attempt of this run wrote, if any."""
    key = final_plan_key(prefix)
    if not storage.exists(key):
        return None
    saved = storage.read_json(key)
    return FinalPlan(
        trial=int(saved["trial"]),
        refit=bool(saved["refit"]),
        params=dict(saved.get("params", {})),
        max_seconds=float(saved.get("maxSeconds", 0.0)),
        nodes=int(saved.get("nodes", 1)),
    )


def decide(job: SearchJob, result: SearchResult, images: ImageCache) -> FinalPlan:
    """Retrain when this is a real search and a full retraining, at the chosen trial's measured pace, fits in
    what is left of the budget: a retraining that could not finish is never started."""
    chosen = result.chosen
    config = result.candidate.config
    affordable = chosen.step_seconds is not None and final_fit_affordable(
        job.plan.remaining(result.seconds),
        chosen.step_seconds,
        config.epochs,
        train_images=images.count("train"),
        validation_images=images.count("validation"),
        batch=config.batch_size,
    )
    settings = job.settings
    nodes = settings.nodes if settings.final_fit_on_all_nodes else 1
    if config.batch_size % (settings.final_processes * nodes):
        nodes = 1  # node 0 alone (final_processes then decides whether on one process)
    return FinalPlan(
        trial=chosen.number,
        refit=job.space.max_trials != 1 and affordable,
        params=dict(chosen.params),
        max_seconds=job.plan.remaining(result.seconds),
        nodes=nodes,
    )


def _train(
    job: SearchJob, plan: FinalPlan, candidate: Candidate, images: ImageCache, reporter: Reporter
) -> TrialResult:
    """Train the plan's fit on train + validation: this node's ranks of it, or one process."""
    config, preprocess = candidate.config, candidate.preprocess
    reporter.stage("Final fit on train + validation", total=config.epochs)

    def on_epoch(epoch: EpochResult) -> bool:
        reporter.update(epoch.epoch, f"train loss {epoch.train_loss:.4f}")
        return False

    data = images.training(("train", "validation"), preprocess.size)
    checkpoint = TrialCheckpoint(images.storage, final_checkpoint_key(job.prefix))
    settings = job.settings
    processes = settings.final_processes if plan.nodes > 1 else final_processes(config, settings.final_processes)
    if processes < settings.final_processes:
        reporter.note(f"batch {config.batch_size} does not divide over the processes: final fit on one")
    if processes * plan.nodes == 1:
        return train_trial(
            data,
            None,
            config,
            preprocess,
            checkpoint=checkpoint,
            multi_label=job.multi_label,
            on_epoch=on_epoch,
            max_seconds=plan.max_seconds,
            device=images.device,
            checkpoint_every_s=CHECKPOINT_EVERY_S,
        )
    trained = train_data_parallel(
        data,
        config,
        preprocess,
        checkpoint=checkpoint,
        nproc=processes,
        multi_label=job.multi_label,
        max_seconds=plan.max_seconds,
        device=worker_device(0),  # every node's ranks on the same kind of device (a resumed node 0 too)
        timeout=timedelta(seconds=settings.rendezvous_timeout),
        node=settings.node if plan.nodes > 1 else 0,
        nodes=plan.nodes,
        rendezvous=settings.rendezvous if plan.nodes > 1 else None,
        checkpoint_every_s=CHECKPOINT_EVERY_S,
    )
    reporter.update(trained.epochs_trained, f"{processes} processes x {plan.nodes} nodes, data-parallel")
    return trained


def fit_final(job: SearchJob, result: SearchResult, images: ImageCache, reporter: Reporter) -> FinalModel:
    """The final model per the run's plan (decided now, or kept from an interrupted attempt)."""
    storage = images.storage
    plan = pinned_plan(storage, job.prefix) or decide(job, result, images)
    # What is left of the budget, as measured now (a plan from an older trainer has no maxSeconds).
    plan = dataclasses.replace(plan, max_seconds=job.plan.remaining(result.seconds))
    storage.write_json(final_plan_key(job.prefix), plan.to_json())
    config = result.candidate.config
    seconds = 0.0
    if plan.refit:
        trained = _train(job, plan, result.candidate, images, reporter)
        if trained.epochs_trained == config.epochs:
            model, checkpoint = trained.model.to(CPU).eval(), final_checkpoint_key(job.prefix)
            return FinalModel(model, True, trained.seconds_used, trained.epochs_trained, checkpoint)
        reporter.note("the final fit ran out of budget: exporting the chosen trial's own model")
        seconds = trained.seconds_used
    if result.chosen.checkpoint is None:
        raise RuntimeError(f"trial {result.chosen.number} has no checkpoint")
    model = restore_model(config, len(job.labels), TrialCheckpoint(storage, result.chosen.checkpoint))
    return FinalModel(model, False, seconds, result.chosen.epochs_trained, result.chosen.checkpoint)


def join_final_fit(
    job: SearchJob, images: ImageCache, reporter: Reporter, node_0_searching: Callable[[], bool] = lambda: False
) -> None:
    """A node other than node 0: train its ranks of the final fit once node 0 has planned it.

    Nothing to do when node 0 exports a trial's own model or fits alone. While
    ``node_0_searching`` says so (its last trials may outlast this node's), the
    wait goes on; no plan within the rendezvous timeout after that is
    ``FinalFitPlanMissingError``.
    """
    timeout = job.settings.rendezvous_timeout
    deadline = time.monotonic() + timeout
    reporter.stage("Waiting for node 0's plan of the final fit", total=None)
    while (plan := pinned_plan(images.storage, job.prefix)) is None:
        if node_0_searching():
            deadline = time.monotonic() + timeout
        elif time.monotonic() > deadline:
            raise FinalFitPlanMissingError(f"node 0 planned no final fit within {timeout:g} s of its search's end")
        time.sleep(PLAN_POLL_SECONDS)
    if plan.refit and plan.nodes > 1:
        _train(job, plan, job.space.suggest(FixedTrial(plan.params, plan.trial)), images, reporter)


def final_processes(config: TrainConfig, requested: int) -> int:
    """The processes the final fit runs on: those requested when the global batch divides over them, else one
    (a batch split unevenly would weigh the ranks' gradients unequally)."""
    return requested if config.batch_size % requested == 0 else 1
