"""The search loop: every worker asks the shared study for a trial, trains it, and reports each epoch.

A worker stops when ``autovision.search.records.stop_reason`` says so (budget,
trial cap, or stalled). Inside a trial, a ``BudgetGate`` over the study's claims
is asked before every training step, so the workers share one remaining
budget and a trial the budget stops is validated and checkpointed where it is.
Everything it does is in storage: trial checkpoints every epoch, the study
journal after every epoch, and progress.json for the operator, so a killed
worker that starts again

* turns its interrupted trial into a resumed one (Optuna marks the old one
  failed; the same parameters are enqueued and continue from its checkpoint),
* never redoes a finished trial, and
* keeps counting the budget from what the journal says was spent.

``run_workers`` runs a node's worker 0 in this process and any others as
processes of their own (one per GPU); ``autovision.search.nodes`` joins the
workers of several nodes into one search.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from collections.abc import Callable

import grpc
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from autovision.contract import exit_codes
from autovision.contract.keys import trial_checkpoint_key
from autovision.data.inspection import available_cores
from autovision.progress import LogReporter, Reporter
from autovision.search.budget import BudgetGate, Claim, finish_steps
from autovision.search.job import WORKERS_PER_NODE, ImageCache, SearchJob
from autovision.search.records import (
    BUDGET_STOP,
    best_so_far,
    budget_allows_a_trial,
    claims,
    search_progress,
    spent_seconds,
    stop_reason,
    write_progress,
)
from autovision.search.study import StudyUnreachableError, ask, open_study
from autovision.search.trial_latency import measure_latency
from autovision.storage import StorageUnavailableError, storage_unavailable
from autovision.train.models import backbone_weights, parameter_count
from autovision.train.trainer import EpochResult, TrialCheckpoint, train_trial

log = logging.getLogger(__name__)


def cores_per_worker(workers: int) -> int:
    """A worker's share of the cores, for its torch threads and its decoding processes."""
    return max(1, available_cores() // workers)


def worker_device(worker: int) -> torch.device:
    """One GPU per worker where there are GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", worker % torch.cuda.device_count())
    return torch.device("cpu")


class _Worker:
    """One process's share of the search; ``local`` is its number on its node (its GPU)."""

    def __init__(self, job: SearchJob, local: int, images: ImageCache, reporter: Reporter) -> None:
        self.job = job
        self.index = job.settings.node * WORKERS_PER_NODE + local
        self.storage = images.storage
        self.images = images.on(worker_device(local), cores_per_worker(job.settings.workers))
        self.reporter = reporter
        self.store = job.study_backend(self.storage)
        self.study = open_study(self.store, job.space, job.settings.seed)

    def run(self) -> None:
        plan = self.job.plan
        title = "Training" if self.job.space.max_trials == 1 else "Searching"
        self.reporter.stage(title, total=None if plan.total_seconds is None else plan.search_seconds)
        recover_interrupted(self.study, self.job, lambda worker: worker == self.index)
        self.store.push()
        while stop_reason(self._trials(), self.job, time.time()) is None:
            self._run_trial(ask(self.study, self.job.settings.seed, self.index))
        self.publish()

    def _trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def _run_trial(self, trial: optuna.Trial) -> None:
        candidate = self.job.space.suggest(trial)
        key = trial.user_attrs.get("checkpoint", trial_checkpoint_key(self.job.prefix, trial.number))
        size, config = candidate.preprocess.size, candidate.config
        finish = finish_steps(config.batch_size, self.images.count("validation"))
        attributes = {
            "worker": self.index,
            "updatedAt": time.time(),
            "checkpoint": key,
            "architecture": candidate.architecture,
            "resolution": size,
            "epochs": config.epochs,
            "finishSteps": finish,
        }
        for name, value in attributes.items():
            trial.set_user_attr(name, value)
        checkpoint = TrialCheckpoint(self.storage, key)
        decoding_started = time.perf_counter()
        train, validation = self.images.training(("train",), size), self.images.split("validation", size)
        decoding = time.perf_counter() - decoding_started
        trial.set_user_attr("decodeSeconds", decoding)
        monitor = _EpochMonitor(self, trial, _report_earlier_epochs(trial, checkpoint), decoding)
        trial.set_user_attr("seconds", decoding)  # all this trial has cost before its first epoch
        ledger = _StudyLedger(self.study, trial)
        prior = _prior_pace(self._trials(), candidate.architecture, size)
        gate = BudgetGate(self.job.plan.search_seconds, ledger, time.time, finish, prior)
        budgeted = self.job.plan.total_seconds is not None
        result = train_trial(
            train,
            validation,
            config,
            candidate.preprocess,
            checkpoint=checkpoint,
            multi_label=self.job.multi_label,
            on_epoch=monitor,
            step_guard=lambda used, pace, left: not budgeted or gate.may_step(monitor.seconds(used), pace, left),
            device=self.images.device,
        )
        started = time.perf_counter()  # an Edge target's conversion to tflite is the trial's cost too
        latency = measure_latency(
            result.model, candidate.preprocess, self.job.labels, self.job.settings.target, self.images.device
        )
        spent = monitor.seconds(result.seconds_used) + time.perf_counter() - started
        measured = {
            "latencyMs": latency.milliseconds,
            "latencyMethod": latency.method.value,
            "modelBytes": latency.model_bytes,
            "parameters": parameter_count(result.model),
            "bestValue": result.best_score,
            "bestEpoch": result.best_epoch,
            "epochsTrained": result.epochs_trained,
            "stepSeconds": monitor.step_seconds,
        }
        for name, value in measured.items():
            trial.set_user_attr(name, value)
        ledger.publish(Claim(spent, 0.0, time.time(), True))
        if gate.stopped:
            trial.set_user_attr("stop", BUDGET_STOP)
            self.study.tell(trial, state=TrialState.PRUNED)
        elif monitor.pruned:
            trial.set_user_attr("stop", "Pruned")
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            self.study.tell(trial, result.best_score)
        self.store.push()
        self.publish()

    def publish(self, detail: str = "") -> float:
        """Write progress.json (node 0 only) and show progress; the seconds spent so far."""
        trials = self._trials()
        if not self.job.settings.is_member_node:
            write_progress(self.storage, self.job.prefix, search_progress(trials, self.job.metric))
        spent = spent_seconds(trials)
        best = best_so_far(trials)
        shown = f"best {best.value:.4f} (trial {best.number}, {best.architecture} {best.resolution} px)" if best else ""
        self.reporter.update(spent, " · ".join(part for part in (detail, shown) if part))
        return spent


def recover_interrupted(study: optuna.Study, job: SearchJob, interrupted_by: Callable[[int], bool]) -> None:
    """Trials left running by workers that are gone (a kill, a lost node): resume them, or close them once
    the budget holds no further trial.

    A resumed trial is enqueued with the same parameters and checkpoint, so
    whichever worker takes it next continues from its last checkpoint.
    """
    trials = study.get_trials(deepcopy=False)
    gone = [
        trial
        for trial in trials
        if trial.state == TrialState.RUNNING and interrupted_by(int(trial.user_attrs.get("worker", -1)))
    ]
    for trial in gone:  # what they claimed is no longer coming
        _set_attribute(study, trial, "ahead", 0.0)
    exhausted = not budget_allows_a_trial(study.get_trials(deepcopy=False), job, time.time())
    for trial in gone:
        if exhausted:
            _set_attribute(study, trial, "stop", BUDGET_STOP)
            study.tell(trial.number, state=TrialState.PRUNED)
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        checkpoint = trial.user_attrs.get("checkpoint", trial_checkpoint_key(job.prefix, trial.number))
        study.enqueue_trial(trial.params, user_attrs={"checkpoint": checkpoint, "resumedFrom": trial.number})


def _set_attribute(study: optuna.Study, trial: FrozenTrial, name: str, value: object) -> None:
    """Set a user attribute of a trial another worker asked for (Optuna has no public call for it)."""
    study._storage.set_trial_user_attr(trial._trial_id, name, value)


def _prior_pace(trials: list[FrozenTrial], architecture: str, resolution: int) -> float | None:
    """Seconds per step that earlier trials of this family at this resolution measured on this search's devices."""
    paces = [
        float(trial.user_attrs["stepSeconds"])
        for trial in trials
        if trial.user_attrs.get("stepSeconds") is not None
        and (trial.user_attrs.get("architecture"), trial.user_attrs.get("resolution")) == (architecture, resolution)
    ]
    return max(paces) if paces else None


class _StudyLedger:
    """The budget's claims as a trial's user attributes in the shared study."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial) -> None:
        self.study = study
        self.trial = trial

    def claims(self) -> list[Claim]:
        return claims(self.study.get_trials(deepcopy=False))

    def publish(self, claim: Claim) -> None:
        for name, value in (("seconds", claim.spent), ("ahead", claim.ahead), ("updatedAt", claim.at)):
            self.trial.set_user_attr(name, value)


def _report_earlier_epochs(trial: optuna.Trial, checkpoint: TrialCheckpoint) -> float:
    """A resumed trial reports the epochs its checkpoint already holds; the seconds they took."""
    state = checkpoint.load()
    if state is None:
        return 0.0
    for entry in state["history"]:
        if entry["validationScore"] is not None:
            trial.report(entry["validationScore"], entry["epoch"])
    return float(state["seconds_used"])


class _EpochMonitor:
    """After each epoch: record time and score in the study, publish progress, ask the pruner.

    ``earlier_seconds`` are the interrupted predecessor's (its own trial counts them);
    ``decoding_seconds`` filled the image cache for this trial: device time too.
    ``step_seconds`` is the slowest pace its epochs measured (the trainer leaves the warm-up step out).
    """

    def __init__(self, worker: _Worker, trial: optuna.Trial, earlier_seconds: float, decoding_seconds: float) -> None:
        self.worker = worker
        self.trial = trial
        self.earlier_seconds = earlier_seconds
        self.decoding_seconds = decoding_seconds
        self.pruned = False
        self.step_seconds: float | None = None

    def seconds(self, trained_seconds: float) -> float:
        """What this trial has cost, from the seconds its checkpoint says it trained (predecessors' included)."""
        return trained_seconds - self.earlier_seconds + self.decoding_seconds

    def __call__(self, result: EpochResult) -> bool:
        if result.step_seconds is not None:  # the slowest epoch's, for this configuration's later trials
            self.step_seconds = max(result.step_seconds, self.step_seconds or 0.0)
        self.trial.set_user_attr("seconds", self.seconds(result.seconds_used))
        self.trial.set_user_attr("updatedAt", time.time())
        if result.validation_score is not None:
            self.trial.report(result.validation_score, result.epoch)
        self.worker.store.push()
        score = "" if result.validation_score is None else f" {result.validation_score:.4f}"
        part = "" if result.complete else " (stopped inside it by the budget)"
        self.worker.publish(f"trial {self.trial.number} epoch {result.epoch}/{result.epochs}{part}{score}")
        self.pruned = result.complete and self.trial.should_prune()
        return self.pruned


def _run_worker(job: SearchJob, local: int, images: ImageCache, reporter: Reporter) -> None:
    """One worker to the end of the search; on a member node, also to the end of node 0's study server.

    Node 0 stops serving only once the search is over, so a member that loses
    the server stops too; a trial it was running stays unfinished in the study.
    """
    try:
        _Worker(job, local, images, reporter).run()
    except (grpc.RpcError, StudyUnreachableError) as error:
        if not job.settings.is_member_node:
            raise
        log.warning("worker %d stops: the study at %s is gone (%s)", local, job.settings.coordinator, error)


def _worker_process(job: SearchJob, local: int) -> None:
    """Entry point of a spawned worker process; an outage of storage ends it with TEMPORARY_FAILURE."""
    torch.set_num_threads(cores_per_worker(job.settings.workers))
    try:
        for backbone in job.space.backbones:  # read once here, with the run's storage settings
            backbone_weights(backbone, job.storage_settings)
        images = ImageCache(job.records, job.labels, job.storage())
        _run_worker(job, local, images, LogReporter())
    except Exception as error:
        if not storage_unavailable(error):
            raise
        log.error("worker %d: %s", local, error)
        sys.exit(exit_codes.TEMPORARY_FAILURE)


def run_workers(job: SearchJob, images: ImageCache, reporter: Reporter) -> None:
    """This node's workers: worker 0 here, the others as spawned processes; returns when all have stopped."""
    context = multiprocessing.get_context("spawn")
    others = [context.Process(target=_worker_process, args=(job, index)) for index in range(1, job.settings.workers)]
    threads = torch.get_num_threads()
    if others:
        torch.set_num_threads(cores_per_worker(job.settings.workers))
    for process in others:
        process.start()
    try:
        _run_worker(job, 0, images, reporter)
    finally:
        for process in others:
            process.join()
        torch.set_num_threads(threads)
    failed = [index for index, process in enumerate(others, start=1) if process.exitcode != 0]
    unavailable = [index for index in failed if others[index - 1].exitcode == exit_codes.TEMPORARY_FAILURE]
    if unavailable:  # the Job retries the pod, as for an outage in this process
        raise StorageUnavailableError(f"search worker(s) {unavailable} lost storage; the retried pod resumes")
    if failed:
        raise RuntimeError(f"search worker(s) {failed} failed; run again to continue the search")
