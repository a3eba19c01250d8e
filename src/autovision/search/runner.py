"""The search loop: every worker asks the shared study for a trial, trains it, and reports each epoch.

A worker stops at the budget, at the trial cap, or (with early stopping) when
the last trials stopped improving on the best. Everything it does is in storage:
trial checkpoints every epoch, the study journal after every epoch, and
progress.json for the operator, so a killed worker that starts again

* turns its interrupted trial into a resumed one (Optuna marks the old one
  failed; the same parameters are enqueued and continue from its checkpoint),
* never redoes a finished trial, and
* keeps counting the budget from what the journal says was spent.

``run_workers`` runs a node's worker 0 in this process and any others as
processes of their own (one per GPU); ``autovision.search.nodes`` joins the
workers of several nodes into one search. ``summarise`` reads the finished
study: the trials table, the accuracy/latency Pareto front and the candidate
``optimizeFor`` chooses.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import optuna
import torch
from optuna.trial import FixedTrial, FrozenTrial, TrialState

from autovision.contract.files import SEARCHING_PHASE, Progress
from autovision.contract.keys import progress_key, trial_checkpoint_key
from autovision.contract.trainer_args import CONNECT_TIMEOUT_SECONDS
from autovision.data.inspection import available_cores
from autovision.data.manifest import SPLITS, ImageRecord, SplitName
from autovision.progress import LogReporter, Reporter
from autovision.resources import OptimizeFor
from autovision.search.budget import BudgetPlan, milli_node_hours, stalled
from autovision.search.pareto import Point, choose, pareto_front
from autovision.search.space import Candidate, Space
from autovision.search.study import (
    RemoteStudy,
    StudyBackend,
    StudyStore,
    StudyUnreachableError,
    ask,
    open_study,
)
from autovision.settings import Settings
from autovision.storage import Storage
from autovision.train.images import ImageSet, load_images
from autovision.train.models import backbone_weights, parameter_count
from autovision.train.trainer import (
    EpochResult,
    TrialCheckpoint,
    batch1_latency_ms,
    metric_name,
    restore_model,
    train_trial,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Worker numbers are node * WORKERS_PER_NODE + the worker's number on its node (its GPU).
WORKERS_PER_NODE = 100

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSettings:
    """How to search: what to optimise for, when to stop early, how many workers, which seed.

    Early stopping ends the search once ``patience`` finished trials in a row
    failed to beat the best before them by ``min_delta``. ``space`` replaces the
    dataset's default search space; ``work_dir`` holds the study journal's local
    copy when storage is an object store. ``workers`` counts one node's workers;
    with ``nodes`` > 1 this process is node ``node`` of them and ``coordinator``
    (HOST:PORT) is where node 0 serves the study.
    """

    optimize_for: OptimizeFor = OptimizeFor.BALANCED
    early_stopping: bool = True
    patience: int = 6
    min_delta: float = 0.001
    max_trials: int | None = None
    workers: int = 1
    seed: int = 0
    space: Space | None = None
    work_dir: Path | None = None
    node: int = 0
    nodes: int = 1
    coordinator: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not 0 <= self.node < self.nodes:
            raise ValueError(f"node {self.node} is not one of the {self.nodes} nodes")
        if self.nodes > 1 and self.coordinator is None:
            raise ValueError("a search over several nodes needs the coordinator's HOST:PORT")
        if not 1 <= self.workers <= WORKERS_PER_NODE:
            raise ValueError(f"workers per node must be 1 to {WORKERS_PER_NODE}, not {self.workers}")

    @property
    def is_member_node(self) -> bool:
        """Whether these are the settings of a node other than node 0."""
        return self.node > 0


@dataclass(frozen=True)
class SearchJob:
    """Everything a search worker needs, picklable so that worker processes can be spawned with it."""

    storage_root: str
    storage_settings: Settings
    prefix: str
    records: tuple[ImageRecord, ...]
    labels: tuple[str, ...]
    multi_label: bool
    space: Space
    budget_milli_node_hours: int | None
    settings: SearchSettings = field(default_factory=SearchSettings)

    def storage(self) -> Storage:
        """A storage client for this process."""
        return Storage(self.storage_root, self.storage_settings)

    @property
    def plan(self) -> BudgetPlan:
        """The budget's split between search and final fit."""
        return BudgetPlan.of(self.budget_milli_node_hours)

    @property
    def metric(self) -> str:
        """The validation metric trials are compared by."""
        return metric_name(self.multi_label)

    def study_store(self, storage: Storage) -> StudyStore:
        """The run's study journal, kept by node 0 (or the only node)."""
        return StudyStore(storage, self.prefix, self.settings.work_dir)

    def study_backend(self, storage: Storage) -> StudyBackend:
        """The study as this node's workers reach it: the journal, or node 0's server over gRPC."""
        if self.settings.is_member_node:
            assert self.settings.coordinator is not None
            return RemoteStudy(self.settings.coordinator, self.settings.connect_timeout)
        return self.study_store(storage)

    @property
    def trial_cap(self) -> int | None:
        """The tighter of the settings' and the space's caps on the number of trials."""
        caps = [cap for cap in (self.settings.max_trials, self.space.max_trials) if cap is not None]
        return min(caps) if caps else None


class ImageCache:
    """Each split decoded once per resolution a trial asks for, kept on the worker's device."""

    def __init__(self, records: tuple[ImageRecord, ...], labels: tuple[str, ...], storage: Storage) -> None:
        self.labels = list(labels)
        self.storage = storage
        self.device = torch.device("cpu")
        self.decode_workers: int | None = None  # None: one per core
        self._records = {split: [record for record in records if record.split == split] for split in SPLITS}
        self._sets: dict[tuple[SplitName, int], ImageSet] = {}

    def on(self, device: torch.device, decode_workers: int | None = None) -> ImageCache:
        """Keep the cached images on this device from now on, decoding new ones on ``decode_workers`` processes."""
        self.device = device
        self.decode_workers = decode_workers
        self._sets = {key: images.to(device) for key, images in self._sets.items()}
        return self

    def split(self, split: SplitName, size: int) -> ImageSet:
        """One split at one resolution, decoded on first use."""
        if (split, size) not in self._sets:
            loaded = load_images(self._records[split], self.labels, size, self.storage, self.decode_workers)
            self._sets[(split, size)] = loaded.to(self.device)
        return self._sets[(split, size)]

    def count(self, split: SplitName) -> int:
        """Images in a split."""
        return len(self._records[split])


# --- reading the study ------------------------------------------------------------


@dataclass(frozen=True)
class TrialRecord:
    """One row of the trials table, read from the study."""

    number: int
    state: str
    architecture: str | None
    resolution: int | None
    epochs: int | None
    epochs_trained: int
    best_epoch: int | None
    value: float | None
    latency_ms: float | None
    parameters: int | None
    seconds: float
    worker: int | None
    stop: str | None
    checkpoint: str | None
    params: dict[str, Any]

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a trial in any state."""
        attrs = trial.user_attrs
        intermediate = list(trial.intermediate_values.values())
        value = attrs.get("bestValue", max(intermediate) if intermediate else None)
        stop = attrs.get("stop", "interrupted" if trial.state == TrialState.FAIL else None)
        return cls(
            number=trial.number,
            state=trial.state.name.lower(),
            architecture=attrs.get("architecture"),
            resolution=attrs.get("resolution"),
            epochs=attrs.get("epochs"),
            epochs_trained=attrs.get("epochsTrained", len(intermediate)),
            best_epoch=attrs.get("bestEpoch"),
            value=value,
            latency_ms=attrs.get("latencyMs"),
            parameters=attrs.get("parameters"),
            seconds=float(attrs.get("seconds", 0.0)),
            worker=attrs.get("worker"),
            stop=stop,
            checkpoint=attrs.get("checkpoint"),
            params=dict(trial.params),
        )

    def to_json(self) -> dict[str, Any]:
        """The row as the model card and ``--json`` show it."""
        return {
            "trial": self.number,
            "state": self.state,
            "architecture": self.architecture,
            "resolution": self.resolution,
            "epochs": self.epochs,
            "epochsTrained": self.epochs_trained,
            "bestEpoch": self.best_epoch,
            "value": self.value,
            "latencyMs": self.latency_ms,
            "parameters": self.parameters,
            "seconds": round(self.seconds, 3),
            "worker": self.worker,
            "stop": self.stop,
            "params": self.params,
        }


def spent_seconds(trials: list[FrozenTrial]) -> float:
    """Device seconds the search has spent, over every trial of every worker (interrupted ones included)."""
    return sum(float(trial.user_attrs.get("seconds", 0.0)) for trial in trials)


def finished_values(trials: list[FrozenTrial]) -> list[float]:
    """Finished trials' values in the order they finished, for early stopping."""
    finished = sorted(
        (trial for trial in trials if trial.state in FINISHED and trial.datetime_complete is not None),
        key=lambda trial: (trial.datetime_complete, trial.number),
    )
    values = (TrialRecord.of(trial).value for trial in finished)
    return [value for value in values if value is not None]


def stop_reason(trials: list[FrozenTrial], job: SearchJob) -> str | None:
    """Why the search must not start another trial: budget, trials or stalled; None to go on."""
    if job.plan.search_exhausted(spent_seconds(trials)):
        return "budget"
    started = [trial for trial in trials if trial.state in (*FINISHED, TrialState.RUNNING)]
    cap = job.trial_cap
    if cap is not None and len(started) >= cap:
        return "trials"
    settings = job.settings
    if settings.early_stopping and stalled(finished_values(trials), settings.patience, settings.min_delta):
        return "stalled"
    return None


def best_so_far(trials: list[FrozenTrial]) -> TrialRecord | None:
    """The trial with the highest validation value yet (running trials count with their best epoch)."""
    records = [TrialRecord.of(trial) for trial in trials if trial.state != TrialState.FAIL]
    scored = [record for record in records if record.value is not None]
    return max(scored, key=lambda record: (record.value, -record.number)) if scored else None


def trial_counts(records: list[TrialRecord]) -> dict[str, int]:
    """Trials done, running and pruned, as status shows them (interrupted ones are counted once resumed)."""
    states = [record.state for record in records]
    return {"done": states.count("complete"), "running": states.count("running"), "pruned": states.count("pruned")}


def search_progress(trials: list[FrozenTrial], metric: str) -> Progress:
    """progress.json while searching: trial counts, the best so far and the budget used."""
    best = best_so_far(trials)
    return Progress.model_validate(
        {
            "phase": SEARCHING_PHASE,
            "trials": trial_counts([TrialRecord.of(trial) for trial in trials]),
            "best": None
            if best is None
            else {"trial": best.number, "architecture": best.architecture, "metric": metric, "value": best.value},
            "milliNodeHoursUsed": milli_node_hours(spent_seconds(trials)),
        }
    )


def write_progress(storage: Storage, prefix: str, progress: Progress) -> None:
    """progress.json, read by the operator: phase, trials, best so far, budget used."""
    storage.write_json(progress_key(prefix), progress.to_json())


# --- one worker ---------------------------------------------------------------------


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
        while stop_reason(self._trials(), self.job) is None:
            self._run_trial(ask(self.study, self.job.settings.seed, self.index))
        self.publish()

    def _trials(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    def _run_trial(self, trial: optuna.Trial) -> None:
        candidate = self.job.space.suggest(trial)
        key = trial.user_attrs.get("checkpoint", trial_checkpoint_key(self.job.prefix, trial.number))
        attributes = {
            "worker": self.index,
            "updatedAt": time.time(),
            "checkpoint": key,
            "architecture": candidate.architecture,
            "resolution": candidate.preprocess.size,
            "epochs": candidate.config.epochs,
        }
        for name, value in attributes.items():
            trial.set_user_attr(name, value)
        checkpoint = TrialCheckpoint(self.storage, key)
        size = candidate.preprocess.size
        decoding_started = time.perf_counter()
        train, validation = self.images.split("train", size), self.images.split("validation", size)
        decoding = time.perf_counter() - decoding_started
        monitor = _EpochMonitor(self, trial, _report_earlier_epochs(trial, checkpoint), decoding)
        trial.set_user_attr("seconds", decoding)  # all this trial has cost before its first epoch
        result = train_trial(
            train,
            validation,
            candidate.config,
            candidate.preprocess,
            checkpoint=checkpoint,
            multi_label=self.job.multi_label,
            on_epoch=monitor,
            device=self.images.device,
        )
        started = time.perf_counter()
        latency = batch1_latency_ms(result.model, size, self.images.device)
        measured = {
            "latencyMs": latency,
            "parameters": parameter_count(result.model),
            "bestValue": result.best_score,
            "bestEpoch": result.best_epoch,
            "epochsTrained": result.epochs_trained,
            "seconds": monitor.seconds(result.seconds_used) + time.perf_counter() - started,
        }
        for name, value in measured.items():
            trial.set_user_attr(name, value)
        if monitor.stop is not None:
            trial.set_user_attr("stop", monitor.stop)
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
    the budget is spent.

    A resumed trial is enqueued with the same parameters and checkpoint, so
    whichever worker takes it next continues from its last epoch.
    """
    trials = study.get_trials(deepcopy=False)
    exhausted = job.plan.search_exhausted(spent_seconds(trials))
    for trial in trials:
        if trial.state != TrialState.RUNNING or not interrupted_by(int(trial.user_attrs.get("worker", -1))):
            continue
        if exhausted:
            study.tell(trial.number, state=TrialState.PRUNED)
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        checkpoint = trial.user_attrs.get("checkpoint", trial_checkpoint_key(job.prefix, trial.number))
        study.enqueue_trial(trial.params, user_attrs={"checkpoint": checkpoint, "resumedFrom": trial.number})


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
    """After each epoch: record time and score in the study, publish progress, decide whether to stop.

    ``earlier_seconds`` are the interrupted predecessor's (its own trial counts them);
    ``decoding_seconds`` filled the image cache for this trial: device time too.
    """

    def __init__(self, worker: _Worker, trial: optuna.Trial, earlier_seconds: float, decoding_seconds: float) -> None:
        self.worker = worker
        self.trial = trial
        self.earlier_seconds = earlier_seconds
        self.decoding_seconds = decoding_seconds
        self.stop: str | None = None

    def seconds(self, trained_seconds: float) -> float:
        """What this trial has cost, from the seconds its checkpoint says it trained (predecessors' included)."""
        return trained_seconds - self.earlier_seconds + self.decoding_seconds

    def __call__(self, result: EpochResult) -> bool:
        self.trial.set_user_attr("seconds", self.seconds(result.seconds_used))
        self.trial.set_user_attr("updatedAt", time.time())
        if result.validation_score is not None:
            self.trial.report(result.validation_score, result.epoch)
        self.worker.store.push()
        score = "" if result.validation_score is None else f" {result.validation_score:.4f}"
        spent = self.worker.publish(f"trial {self.trial.number} epoch {result.epoch}/{result.epochs}{score}")
        if self.worker.job.plan.search_exhausted(spent):
            self.stop = "budget"
        elif self.trial.should_prune():
            self.stop = "pruned"
        return self.stop is not None


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
    """Entry point of a spawned worker process."""
    torch.set_num_threads(cores_per_worker(job.settings.workers))
    for backbone in job.space.backbones:  # read once here, with the run's storage settings
        backbone_weights(backbone, job.storage_settings)
    images = ImageCache(job.records, job.labels, job.storage())
    _run_worker(job, local, images, LogReporter())


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
    if failed:
        raise RuntimeError(f"search worker(s) {failed} failed; run again to continue the search")


# --- the result -----------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """The finished search: every trial, the Pareto front, the chosen trial and its candidate."""

    trials: list[TrialRecord]
    front: list[Point]
    chosen: TrialRecord
    candidate: Candidate
    seconds: float
    stop_reason: str
    metric: str

    def to_json(self, optimize_for: OptimizeFor) -> dict[str, Any]:
        """The search section of the model card."""
        return {
            "optimizeFor": optimize_for.value,
            "metric": self.metric,
            "stopReason": self.stop_reason,
            "seconds": round(self.seconds, 3),
            "chosenTrial": self.chosen.number,
            "paretoFront": [
                {"trial": point.trial, "value": point.value, "latencyMs": point.latency_ms} for point in self.front
            ],
            "trials": [record.to_json() for record in self.trials],
        }


def candidate_of(job: SearchJob, record: TrialRecord) -> Candidate:
    """Rebuild a trial's candidate from its parameters."""
    return job.space.suggest(FixedTrial(record.params, record.number))


def _with_latency(job: SearchJob, record: TrialRecord, images: ImageCache) -> TrialRecord:
    """A finished trial closed without a latency (its worker was killed): measure it from its checkpoint."""
    if record.latency_ms is not None or record.checkpoint is None:
        return record
    candidate = candidate_of(job, record)
    model = restore_model(candidate.config, len(job.labels), TrialCheckpoint(images.storage, record.checkpoint))
    latency = batch1_latency_ms(model, candidate.preprocess.size, images.device)
    return dataclasses.replace(record, latency_ms=latency)


def summarise(job: SearchJob, images: ImageCache, pinned: int | None = None) -> SearchResult:
    """Read the finished study: the trials table, the Pareto front and the trial optimizeFor picks.

    ``pinned`` is a choice made before (by an interrupted run), kept so that a
    rerun exports the model it had started to finish.
    """
    study = open_study(job.study_store(images.storage), job.space, job.settings.seed)
    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.of(trial) for trial in trials]
    candidates = [
        _with_latency(job, record, images)
        for record, trial in zip(records, trials, strict=True)
        if trial.state in FINISHED and record.value is not None
    ]
    if not candidates:
        raise RuntimeError("the search finished no trial: the budget is too small to train any model")
    points = [Point(record.number, record.value or 0.0, record.latency_ms or 0.0) for record in candidates]
    chosen_number = choose(points, job.settings.optimize_for).trial if pinned is None else pinned
    chosen = next(record for record in candidates if record.number == chosen_number)
    by_number = {record.number: record for record in candidates}
    return SearchResult(
        trials=[by_number.get(record.number, record) for record in records],
        front=pareto_front(points),
        chosen=chosen,
        candidate=candidate_of(job, chosen),
        seconds=spent_seconds(trials),
        stop_reason=stop_reason(trials, job) or "stopped",
        metric=job.metric,
    )
