"""The training loop of one trial, checkpointed to storage every epoch.

A trial killed at any moment restarts from its last checkpoint with the same
result it would have had uninterrupted (on CPU): every epoch reseeds the random
number generators from (seed, epoch), so shuffling, augmentation, mixing and
dropout do not depend on where a run was interrupted, and the checkpoint holds
model, optimiser, schedule, EMA, best weights and time used.

A ``StepGuard`` asked before every training step can stop a trial inside an
epoch (a spent budget): the trial then validates what it learned and writes a
mid-epoch checkpoint (the step reached and the generators' state), from which
a later run continues that epoch where it stopped.

Images come decoded once into a compact uint8 cache (``ImageSet``,
``autovision.train.images``), or, for a split too large for memory, streamed
from the shards batch by batch (``autovision.train.streaming``): the trainer
draws the same shuffled order for either and asks it for the batches from
where the epoch stands. Normalisation, augmentation and mixing
(``autovision.train.augment``) run batch-wise on the training device.
"""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from autovision.evaluate.metrics import average_precision, sigmoid
from autovision.evaluate.predictions import BoolArray
from autovision.preprocess import FloatArray, PreprocessConfig
from autovision.storage import Storage
from autovision.train.augment import augment, mix
from autovision.train.ema import WeightAverage
from autovision.train.families import family_of
from autovision.train.families.base import ArchitectureConfig
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import PREDICT_BATCH, ImageSet, TrainingImages, normalise
from autovision.train.warm_start import starting_model

CPU = torch.device("cpu")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one trial (the input resolution is the trial's PreprocessConfig).

    ``augment`` is the magnitude in [0, 1] of a random affine transform (zoom,
    rotation, shift) and brightness/contrast jitter; ``mixup`` and ``cutmix`` are
    the Beta(alpha, alpha) parameters of those mixes (0 turns one off); ``ema`` is
    the decay of an exponential moving average of the weights, evaluated and
    exported instead of the raw weights (0 turns it off). ``initial_weights`` is
    the URI of a state dict the model starts from instead of its family's
    initialisation (a base run's final weights, ``autovision.train.warm_start``).
    """

    epochs: int = 12
    batch_size: int = 64
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "linear"] = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    augment: float = 0.0
    flip: bool = False
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: float = 0.0
    seed: int = 0
    architecture: ArchitectureConfig = field(default_factory=ResidualCNNConfig)
    initial_weights: str | None = None

    def describe(self) -> dict[str, Any]:
        """The configuration as JSON-ready data, for run ids and the model card (``initial_weights`` only when
        set, so that the ids of runs from scratch stay what they were)."""
        described = {**asdict(self), "architecture": self.architecture.describe()}
        if self.initial_weights is None:
            del described["initial_weights"]
        return described


class TrialCheckpoint:
    """A trial's checkpoint at one storage key, written atomically."""

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage = storage
        self.key = key

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None before the first epoch finished."""
        if not self.storage.exists(self.key):
            return None
        state: dict[str, Any] = torch.load(io.BytesIO(self.storage.read_bytes(self.key)), weights_only=False)
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state atomically."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.storage.write_bytes(self.key, buffer.getvalue())


@dataclass(frozen=True)
class EpochResult:
    """What one finished epoch reports; ``validation_score`` is None without a validation set.

    ``complete`` is False for the part of an epoch a ``StepGuard`` stopped.
    """

    epoch: int
    epochs: int
    train_loss: float
    validation_score: float | None
    seconds_used: float
    complete: bool = True
    # Mean seconds per training step so far, the run's warm-up step left out (see _StepPace).
    step_seconds: float | None = None


# Asked before each training step with the seconds the trial has used, its mean seconds per step so far
# (None before its first step) and the steps left in this epoch, this one included: whether to take the step.
StepGuard = Callable[[float, float | None, int], bool]


@dataclass
class TrialResult:
    """A trained trial: the best weights (on validation, else the last), its history and cost."""

    model: nn.Module
    best_score: float | None
    best_epoch: int
    history: list[dict[str, float | None]]
    seconds_used: float
    starts: list[int]
    stopped_inside_epoch: bool = False

    @property
    def epochs_trained(self) -> int:
        """Epochs run so far, across restarts."""
        return len(self.history)


def metric_name(multi_label: bool) -> str:
    """The validation metric a trial is judged by: accuracy, or micro average precision for multi-label."""
    return "validationAveragePrecision" if multi_label else "validationAccuracy"


def validation_score(logits: FloatArray, truth: BoolArray, multi_label: bool) -> float:
    """Top-1 accuracy (single-label) or micro-averaged average precision of the sigmoid scores (multi-label)."""
    if len(truth) == 0:
        return 0.0
    if multi_label:
        micro = average_precision(truth, sigmoid(logits), [str(j) for j in range(truth.shape[1])])["micro"]
        return float(micro) if micro is not None else 0.0
    return float((logits.argmax(axis=1) == truth.argmax(axis=1)).mean())


def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = PREDICT_BATCH) -> FloatArray:
    """Logits for a batch of inputs in eval mode."""
    return _logits(model, (inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)))


def image_logits(model: nn.Module, images: ImageSet, preprocess: PreprocessConfig) -> FloatArray:
    """Logits for every image of a set, normalising one batch at a time."""
    return _logits(model, images.batches(preprocess))


def _logits(model: nn.Module, batches: Iterator[torch.Tensor]) -> FloatArray:
    model.eval()
    with torch.inference_mode():
        outputs = [model(batch).float().cpu() for batch in batches]
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def loss_of(logits: torch.Tensor, targets: torch.Tensor, multi_label: bool, label_smoothing: float) -> torch.Tensor:
    """Softmax cross-entropy on (soft) target rows, or per-label sigmoid binary cross-entropy."""
    if multi_label:
        smoothed = targets * (1 - label_smoothing) + label_smoothing / 2
        return functional.binary_cross_entropy_with_logits(logits.float(), smoothed)
    return functional.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


# --- optimisation ----------------------------------------------------------------


@dataclass(frozen=True)
class Acceleration:
    """How a run uses its device; none of it changes what is learnt beyond floating-point rounding.

    ``channels_last`` memory layout and ``bf16`` autocast suit tensor cores;
    ``fused_optimizer`` updates all weights in a few kernels; ``compile`` runs the
    training forward and backward through torch.compile, which costs a compilation
    per run (counted in its time) and so pays off only for long runs.
    """

    channels_last: bool = False
    bf16: bool = False
    fused_optimizer: bool = False
    compile: bool = False

    @classmethod
    def for_device(cls, device: torch.device) -> Acceleration:
        """What a device gets by default: everything but compilation on a GPU, plain fp32 on a CPU."""
        cuda = device.type == "cuda"
        return cls(channels_last=cuda, bf16=cuda, fused_optimizer=cuda)


def build_optimizer(model: nn.Module, config: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD; weight decay on weights only, not on biases and norm parameters."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.learning_rate, momentum=0.9, nesterov=True, fused=fused)
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=fused)


def learning_rate_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_epochs``, then cosine or linear decay, reaching zero when training ends."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total, max(1, round(config.warmup_epochs * steps_per_epoch)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 1 - progress if config.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class Replica(Protocol):
    """One process of a data-parallel run (``autovision.train.distributed``), as the training loop sees it.

    Every replica draws the same shuffled order; of each global batch it takes
    the images ``rank::world_size``, so the global batch and learning rate stay
    those of the configuration and each rank trains on ``batch_size / world_size``.
    """

    @property
    def rank(self) -> int:
        """This process's index; rank 0 alone writes checkpoints."""
        ...

    @property
    def world_size(self) -> int:
        """How many processes train together."""
        ...

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model as this replica trains it (synchronised batch norm where the device supports it)."""
        ...

    def wrap(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """The training forward whose backward all-reduces the gradients."""
        ...

    def agree(self, take: bool) -> bool:
        """Whether every replica takes the next step: one stopping alone would leave the others waiting."""
        ...


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch of a run: its shuffle, augmentation, mixing and dropout draw from it."""
    return seed * 100_003 + epoch


def epoch_order(seed: int, epoch: int, count: int) -> torch.Tensor:
    """An epoch's shuffled order of ``count`` images: reseeds torch's generator for the epoch, then draws it
    (the draws after it, augmentation's, go on from there)."""
    torch.manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(count)


@dataclass
class _Run:
    """The live objects of one training run."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: WeightAverage | None
    device: torch.device
    acceleration: Acceleration
    # How long the run's first step took, once taken: the warm-up, kept out of its pace.
    warmup_seconds: float | None = None

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated and kept: the EMA's where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def _start(
    config: TrainConfig,
    num_classes: int,
    steps_per_epoch: int,
    device: torch.device,
    acceleration: Acceleration,
    *,
    replica: Replica | None = None,
) -> _Run:
    torch.manual_seed(config.seed)
    model = starting_model(config.architecture, num_classes, config.initial_weights).to(device)
    if replica is not None:
        model = replica.prepare(model)
    if acceleration.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every batch of a run has the same shape
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if acceleration.compile else model
    if replica is not None:
        forward = replica.wrap(model)
    optimizer = build_optimizer(model, config, fused=acceleration.fused_optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(config, steps_per_epoch))
    ema = WeightAverage(model, config.ema) if config.ema > 0 else None
    return _Run(model, forward, optimizer, scheduler, ema, device, acceleration)


@dataclass
class _EpochPosition:
    """How far into an epoch a run is: steps taken, and their summed loss and sample count."""

    step: int = 0
    loss_sum: float = 0.0
    samples: int = 0
    generators: dict[str, Any] | None = None
    finished: bool = False

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.samples)


def _train_one_epoch(
    run: _Run,
    data: TrainingImages,
    preprocess: PreprocessConfig,
    config: TrainConfig,
    multi_label: bool,
    *,
    epoch: int,
    position: _EpochPosition,
    may_step: Callable[[float | None, int], bool],
    prior_pace: float | None,
    replica: Replica | None = None,
) -> float | None:
    """One pass over shuffled data (the last partial batch dropped) from ``position``, which it advances.

    ``may_step`` is asked before each step with the mean seconds per step so far
    (``prior_pace`` before the first) and the steps left in the pass, and can stop it. Returns that mean,
    None if no step was taken. The run's first step is left out of the mean (``_StepPace``)."""
    run.model.train()
    order = epoch_order(config.seed, epoch, len(data))
    if position.generators is not None:  # continue a stopped epoch with the draws it would have made
        _restore_generators(position.generators, run.device)
    usable = len(order) - len(order) % config.batch_size if len(order) > config.batch_size else len(order)
    steps = range(position.step * config.batch_size, usable, config.batch_size)
    total = torch.zeros((), device=run.device)
    pace, taken = _StepPace(run, prior_pace), 0
    rank, world_size = (replica.rank, replica.world_size) if replica is not None else (0, 1)
    selections = (order[start : start + config.batch_size][rank::world_size] for start in steps)
    batches = data.training_batches(selections, config.augment, epoch_seed(config.seed, epoch))
    try:
        for _ in steps:
            if not may_step(pace.seconds, len(steps) - taken):
                break
            pixels, rows = next(batches)
            augmented = augment(normalise(pixels, preprocess), config.augment, config.flip, data.crops)
            inputs, targets = mix(augmented, rows, config.mixup, config.cutmix)
            if run.acceleration.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.acceleration.bf16):
                loss = loss_of(run.forward(inputs), targets, multi_label, config.label_smoothing)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            run.optimizer.step()
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update(run.model)
            total += loss.detach() * len(pixels)
            taken += 1
            pace.step_taken()
    finally:
        batches.close()  # a stream stops decoding ahead
    position.step += taken
    position.loss_sum += float(total)
    position.samples += taken * (config.batch_size // world_size)
    position.finished = taken == len(steps)
    return pace.measured


class _StepPace:
    """Mean seconds per step over one pass, leaving out the run's first step.

    A run's first step warms up: lazy allocations, cuDNN's autotuning, kernel
    compilation. On a GPU it can take as long as an epoch of later steps (20 s
    against 1.6 s on an H200), and counting it in the pace made the budget gate
    refuse work that fitted. Its time is still spent and charged; it only does not
    predict the next step. Until a step after it has been timed, the pace is the
    caller's prior (an earlier pass's, or None: unknown).
    """

    def __init__(self, run: _Run, prior: float | None) -> None:
        self.run = run
        self.prior = prior
        self.since = time.perf_counter()
        self.last = self.since
        self.timed = 0

    def step_taken(self) -> None:
        """Time the step just finished."""
        self.last = time.perf_counter()
        if self.run.warmup_seconds is None:
            self.run.warmup_seconds = self.last - self.since
            self.since = self.last
        else:
            self.timed += 1

    @property
    def measured(self) -> float | None:
        """The mean over this pass's timed steps; None before any."""
        return (self.last - self.since) / self.timed if self.timed else None

    @property
    def seconds(self) -> float | None:
        """The pace to plan the next step with."""
        measured = self.measured
        return measured if measured is not None else self.prior


def _generator_state(device: torch.device) -> dict[str, Any]:
    """The random generators' state, so that a mid-epoch checkpoint continues the same draws."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def _restore_generators(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _fresh_state() -> dict[str, Any]:
    return {
        "epoch": 0,
        "best_score": None,
        "best_epoch": 0,
        "best_model": None,
        "history": [],
        "seconds_used": 0.0,
        "starts": [],
        "inside_epoch": None,
    }


def _improved(score: float | None, best: float | None) -> bool:
    """Without validation the latest epoch is the best; with it, only a strictly higher score is."""
    return score is None or best is None or score > best


def train_trial(
    train: TrainingImages,
    validation: ImageSet | None,
    config: TrainConfig,
    preprocess: PreprocessConfig,
    *,
    checkpoint: TrialCheckpoint,
    multi_label: bool = False,
    on_epoch: Callable[[EpochResult], bool] | None = None,
    step_guard: StepGuard | None = None,
    max_seconds: float | None = None,
    device: torch.device = CPU,
    acceleration: Acceleration | None = None,
    replica: Replica | None = None,
    checkpoint_every_s: float | None = None,
) -> TrialResult:
    """Train one configuration, keeping the weights best on validation (the last ones without it); resumable.

    ``step_guard`` is asked before every step; when it says no, the trial stops
    inside the epoch, validates, and checkpoints there. ``max_seconds`` is such a
    guard on this trial's own time: no step starts that its pace says would
    cross it. ``on_epoch`` runs after each (possibly partial) epoch's checkpoint
    is saved; when it returns True (a pruner's verdict) the trial stops there.
    ``acceleration`` defaults to the device's (``Acceleration.for_device``).
    ``replica`` makes this one process of a data-parallel run: it trains on its
    share of each global batch and only its rank 0 writes the checkpoint.
    ``checkpoint_every_s`` also checkpoints inside an epoch that long after the
    last save, and carries on: a run lost then (a preempted node) resumes there
    instead of at the epoch's start.
    """
    train, validation = train.to(device), validation.to(device) if validation is not None else None
    steps_per_epoch = max(1, len(train) // config.batch_size)
    acceleration = acceleration or Acceleration.for_device(device)
    run = _start(config, train.label_count, steps_per_epoch, device, acceleration, replica=replica)
    state = checkpoint.load() or _fresh_state()
    state["starts"].append(state["epoch"])
    if state["epoch"] or state.get("inside_epoch"):
        run.restore(state)
    stopped, pace = False, None
    saves = _PeriodicSave(checkpoint_every_s, replica)
    for epoch in range(state["epoch"], config.epochs):
        started = time.perf_counter()

        def may_step(
            step_seconds: float | None, left: int, used: float = state["seconds_used"], since: float = started
        ) -> bool:
            spent = used + time.perf_counter() - since
            take = max_seconds is None or spent + (step_seconds or 0.0) <= max_seconds
            take = take and (step_guard is None or step_guard(spent, step_seconds, left))
            take = take if replica is None else replica.agree(take)
            return take and not saves.pausing()

        position = _resume_position(state)
        first_step = position.step
        while True:
            pace = (
                _train_one_epoch(
                    run,
                    train,
                    preprocess,
                    config,
                    multi_label,
                    epoch=epoch,
                    position=position,
                    may_step=may_step,
                    prior_pace=pace,
                    replica=replica,
                )
                or pace
            )
            if not saves.paused:
                break
            # The pass goes on with the same order (drawn again), then the same draws.
            saves.save(checkpoint, _paused_state(state, run, epoch, position, time.perf_counter() - started))
        stopped = not position.finished
        generators = _generator_state(device) if stopped else None
        if stopped and position.step == first_step:
            break  # not one step fitted: nothing new to validate
        score = None
        if validation is not None:
            logits = image_logits(run.evaluated, validation, preprocess)
            score = validation_score(logits, validation.truth(), multi_label)
        if _improved(score, state["best_score"]):
            best_model = copy.deepcopy(run.evaluated.state_dict())
            state.update(best_score=score, best_epoch=epoch + 1, best_model=best_model)
        state["seconds_used"] += time.perf_counter() - started
        entry = {"epoch": epoch + 1, "trainLoss": position.mean_loss, "validationScore": score}
        if state["history"] and state["history"][-1]["epoch"] == epoch + 1:
            state["history"].pop()  # the partial epoch this one continued
        state["history"].append({**entry, "seconds": state["seconds_used"], "steps": position.step})
        inside = {
            "step": position.step,
            "lossSum": position.loss_sum,
            "samples": position.samples,
            "generators": generators,
        }
        state.update(epoch=epoch + int(not stopped), inside_epoch=inside if stopped else None, **run.state())
        saves.save(checkpoint, state)
        epoch_pace = pace if pace is not None else run.warmup_seconds  # one step only: all there is
        result = EpochResult(
            epoch + 1, config.epochs, position.mean_loss, score, state["seconds_used"], not stopped, epoch_pace
        )
        if (on_epoch and on_epoch(result)) or stopped:
            break
    return _result(run, state, stopped)


class _PeriodicSave:
    """When a pass pauses for a periodic checkpoint: ``every`` seconds after the last one, a step taken since.

    Under data parallelism every replica pauses when any one's clock says so, since
    all must stop at the same step.
    """

    def __init__(self, every: float | None, replica: Replica | None) -> None:
        self.every = every
        self.replica = replica
        self.paused = False
        self.since = time.perf_counter()
        self.steps = 0

    def pausing(self) -> bool:
        """Asked before a step that may be taken: whether to pause before it instead."""
        if self.every is None:
            return False
        due = self.steps > 0 and time.perf_counter() - self.since >= self.every
        self.paused = due if self.replica is None else not self.replica.agree(not due)
        self.steps += not self.paused
        return self.paused

    def save(self, checkpoint: TrialCheckpoint, state: dict[str, Any]) -> None:
        """Write a checkpoint (rank 0 alone under data parallelism): an epoch's or a paused pass's; the next
        periodic one is due ``every`` seconds from now."""
        if self.replica is None or self.replica.rank == 0:
            checkpoint.save(state)
        self.paused, self.since, self.steps = False, time.perf_counter(), 0


def _paused_state(
    state: dict[str, Any], run: _Run, epoch: int, position: _EpochPosition, epoch_seconds: float
) -> dict[str, Any]:
    """What a periodic checkpoint holds: the state as if the epoch had stopped at ``position`` (not validated)."""
    seconds = state["seconds_used"] + epoch_seconds
    entry = {
        "epoch": epoch + 1,
        "trainLoss": position.mean_loss,
        "validationScore": None,
        "seconds": seconds,
        "steps": position.step,
    }
    position.generators = _generator_state(run.device)  # where the pass goes on, in this process or a new one
    inside = {
        "step": position.step,
        "lossSum": position.loss_sum,
        "samples": position.samples,
        "generators": position.generators,
    }
    history = [*state["history"], entry]
    return {**state, **run.state(), "epoch": epoch, "seconds_used": seconds, "history": history, "inside_epoch": inside}


def _resume_position(state: dict[str, Any]) -> _EpochPosition:
    """Where the epoch starts: at its beginning, or where a mid-epoch checkpoint stopped it.

    Resuming inside an epoch draws the same shuffled order (the generator was
    just reseeded for the epoch) and then the same generators' state as when it
    stopped; the partial epoch's history entry is replaced when it finishes.
    """
    inside = state.get("inside_epoch")
    if not inside:
        return _EpochPosition()
    state["inside_epoch"] = None
    state["history"].pop()
    return _EpochPosition(inside["step"], inside["lossSum"], inside["samples"], inside["generators"])


def _result(run: _Run, state: dict[str, Any], stopped_inside_epoch: bool) -> TrialResult:
    if state["best_model"] is not None:
        run.model.load_state_dict(state["best_model"])
    run.model.eval()
    return TrialResult(
        model=run.model,
        best_score=state["best_score"],
        best_epoch=state["best_epoch"],
        history=state["history"],
        seconds_used=state["seconds_used"],
        starts=state["starts"],
        stopped_inside_epoch=stopped_inside_epoch,
    )


def restore_model(config: TrainConfig, num_classes: int, checkpoint: TrialCheckpoint) -> nn.Module:
    """A trial's best weights from its checkpoint, in eval mode on the CPU."""
    state = checkpoint.load()
    if state is None or state["best_model"] is None:
        raise FileNotFoundError(f"{checkpoint.key} holds no trained weights")
    return family_of(config.architecture).restore(config.architecture, num_classes, state["best_model"]).eval()


def batch1_latency_ms(
    model: nn.Module, size: int, device: torch.device = CPU, repeats: int = 30, warmup: int = 5
) -> float:
    """Median batch-1 forward latency in milliseconds on the device (eval mode, inference only)."""
    model = model.to(device).eval()
    example = torch.zeros(1, 3, size, size, device=device)
    timings = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            _synchronise(device)
            started = time.perf_counter()
            model(example)
            _synchronise(device)
            if index >= warmup:
                timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
