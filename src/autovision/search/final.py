"""The final model: the chosen configuration retrained on train + validation when the budget allows.

The decision (which trial, whether to retrain) is written to ``final/plan.json``
before any retraining starts, so a run interrupted during the final fit resumes
the same fit from its checkpoint rather than deciding again. Without the budget
for a full retraining, or for a single fixed configuration, the chosen trial's
own best weights are the final model: a retraining cut short would end in the
middle of its learning-rate schedule. With ``final_processes`` > 1 the fit runs
data-parallel (``autovision.train.distributed``); its seconds are summed over
the processes, as the budget counts device time.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from autovision.contract.keys import final_checkpoint_key, final_plan_key
from autovision.progress import Reporter
from autovision.search.budget import final_fit_affordable
from autovision.search.job import ImageCache, SearchJob
from autovision.search.summary import SearchResult
from autovision.storage import Storage
from autovision.train.distributed import train_data_parallel
from autovision.train.images import ImageSet
from autovision.train.trainer import (
    CPU,
    EpochResult,
    TrainConfig,
    TrialCheckpoint,
    restore_model,
    train_trial,
)


@dataclass(frozen=True)
class FinalPlan:
    """Which trial becomes the model, and whether it is retrained on train + validation first."""

    trial: int
    refit: bool


@dataclass(frozen=True)
class FinalModel:
    """The model to evaluate and export, on the CPU, with what producing it cost."""

    model: nn.Module
    refit: bool
    seconds: float
    epochs_trained: int


def pinned_plan(storage: Storage, prefix: str) -> FinalPlan | None:
    """The plan an earlier, interrupted attempt of this run wrote, if any."""
    key = final_plan_key(prefix)
    if not storage.exists(key):
        return None
    saved = storage.read_json(key)
    return FinalPlan(trial=int(saved["trial"]), refit=bool(saved["refit"]))


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
    return FinalPlan(trial=chosen.number, refit=job.space.max_trials != 1 and affordable)


def fit_final(job: SearchJob, result: SearchResult, images: ImageCache, reporter: Reporter) -> FinalModel:
    """The final model per the run's plan (decided now, or kept from an interrupted attempt)."""
    storage = images.storage
    plan = pinned_plan(storage, job.prefix) or decide(job, result, images)
    storage.write_json(final_plan_key(job.prefix), {"trial": plan.trial, "refit": plan.refit})
    config, preprocess = result.candidate.config, result.candidate.preprocess
    seconds = 0.0
    if plan.refit:
        reporter.stage("Final fit on train + validation", total=config.epochs)

        def on_epoch(epoch: EpochResult) -> bool:
            reporter.update(epoch.epoch, f"train loss {epoch.train_loss:.4f}")
            return False

        data = ImageSet.concat(images.split("train", preprocess.size), images.split("validation", preprocess.size))
        checkpoint = TrialCheckpoint(storage, final_checkpoint_key(job.prefix))
        remaining = job.plan.remaining(result.seconds)
        processes = final_processes(config, job.settings.final_processes)
        if processes < job.settings.final_processes:
            reporter.note(f"batch {config.batch_size} does not divide over the processes: final fit on one")
        if processes > 1:
            trained = train_data_parallel(
                data,
                config,
                preprocess,
                checkpoint=checkpoint,
                nproc=processes,
                multi_label=job.multi_label,
                max_seconds=remaining,
                device=images.device,
            )
            reporter.update(trained.epochs_trained, f"{processes} processes, data-parallel")
        else:
            trained = train_trial(
                data,
                None,
                config,
                preprocess,
                checkpoint=checkpoint,
                multi_label=job.multi_label,
                on_epoch=on_epoch,
                max_seconds=remaining,
                device=images.device,
            )
        if trained.epochs_trained == config.epochs:
            return FinalModel(trained.model.to(CPU).eval(), True, trained.seconds_used, trained.epochs_trained)
        reporter.note("the final fit ran out of budget: exporting the chosen trial's own model")
        seconds = trained.seconds_used
    if result.chosen.checkpoint is None:
        raise RuntimeError(f"trial {result.chosen.number} has no checkpoint")
    model = restore_model(config, len(job.labels), TrialCheckpoint(storage, result.chosen.checkpoint))
    return FinalModel(model, False, seconds, result.chosen.epochs_trained)


def final_processes(config: TrainConfig, requested: int) -> int:
    """The processes the final fit runs on: those requested when the global batch divides over them, else one
    (a batch split unevenly would weigh the ranks' gradients unequally)."""
    return requested if config.batch_size % requested == 0 else 1
