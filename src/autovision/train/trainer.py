"""The training loop of one trial, checkpointed to storage every epoch.

A trial killed at any moment restarts from its last completed epoch with the same
result it would have had uninterrupted (on CPU): shuffling is seeded per epoch,
and the checkpoint holds model, optimiser, best weights and time used.
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from autovision.data.manifest import ImageRecord, SplitName
from autovision.preprocess import FloatArray, PreprocessConfig, preprocess_bytes
from autovision.storage import Storage, read_uris
from autovision.train.models import ResidualCNNConfig, build_residual_cnn


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one trial."""

    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    seed: int = 0
    architecture: ResidualCNNConfig = field(default_factory=ResidualCNNConfig)

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SplitData:
    """One split as model-ready tensors, plus where each image came from."""

    inputs: torch.Tensor
    targets: torch.Tensor
    uris: list[str]


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    epochs: int
    train_loss: float
    validation_accuracy: float
    seconds_used: float


@dataclass
class TrialResult:
    model: nn.Module
    best_validation_accuracy: float
    best_epoch: int
    history: list[dict[str, float]]
    seconds_used: float
    starts: list[int]


def load_split(
    records: list[ImageRecord], labels: list[str], split: SplitName, preprocess: PreprocessConfig, storage: Storage
) -> SplitData:
    """Read and preprocess every image of one split with the shared preprocessing."""
    chosen = [record for record in records if record.split == split]
    index = {label: i for i, label in enumerate(labels)}
    arrays = [preprocess_bytes(data, preprocess) for data in read_uris([r.uri for r in chosen], storage.settings)]
    inputs = torch.from_numpy(np.stack(arrays)) if arrays else torch.empty(0, 3, preprocess.size, preprocess.size)
    targets = torch.tensor([index[record.labels[0]] for record in chosen], dtype=torch.long)
    return SplitData(inputs=inputs, targets=targets, uris=[record.uri for record in chosen])


class TrialCheckpoint:
    """A trial's checkpoint at one storage key, written atomically."""

    def __init__(self, storage: Storage, key: str) -> None:
        self.storage = storage
        self.key = key

    def load(self) -> dict[str, Any] | None:
        if not self.storage.exists(self.key):
            return None
        state: dict[str, Any] = torch.load(io.BytesIO(self.storage.read_bytes(self.key)), weights_only=False)
        return state

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.storage.write_bytes(self.key, buffer.getvalue())


def predict_logits(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> FloatArray:
    """Logits for a batch of inputs in eval mode."""
    model.eval()
    with torch.inference_mode():
        outputs = [model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def _learning_rate_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up for one epoch, then cosine decay to zero."""
    total = max(1, config.epochs * steps_per_epoch)
    warmup = max(1, steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + float(np.cos(np.pi * min(1.0, progress))))

    return factor


def _train_one_epoch(
    model: nn.Module,
    data: SplitData,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    *,
    config: TrainConfig,
    epoch: int,
) -> float:
    model.train()
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(len(data.inputs), generator=generator)
    total_loss = 0.0
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(data.inputs[batch]), data.targets[batch])
        loss.backward()
        optimizer.step()
        scheduler.step()
        total_loss += loss.item() * len(batch)
    return total_loss / max(1, len(order))


def accuracy(logits: FloatArray, targets: torch.Tensor) -> float:
    if len(targets) == 0:
        return 0.0
    return float((logits.argmax(axis=1) == targets.numpy()).mean())


def train_trial(
    train: SplitData,
    validation: SplitData,
    num_classes: int,
    config: TrainConfig,
    *,
    checkpoint: TrialCheckpoint,
    on_epoch: Callable[[EpochResult], None] | None = None,
    max_seconds: float | None = None,
) -> TrialResult:
    """Train one configuration, keeping the weights best on validation; resumable.

    With ``max_seconds`` the trial stops after the epoch that spends its budget, so a
    budget is measured training time, not a promise.
    """
    torch.manual_seed(config.seed)
    model = build_residual_cnn(config.architecture, num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(train.inputs) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _learning_rate_factor(config, steps_per_epoch))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    state = checkpoint.load() or {
        "epoch": 0,
        "best_accuracy": -1.0,
        "best_epoch": 0,
        "best_model": None,
        "history": [],
        "seconds_used": 0.0,
        "starts": [],
    }
    state["starts"].append(state["epoch"])
    if state["epoch"]:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    for epoch in range(state["epoch"], config.epochs):
        if max_seconds is not None and state["seconds_used"] >= max_seconds:
            break
        started = time.perf_counter()
        train_loss = _train_one_epoch(model, train, optimizer, scheduler, loss_fn, config=config, epoch=epoch)
        validation_accuracy = accuracy(predict_logits(model, validation.inputs), validation.targets)
        if validation_accuracy > state["best_accuracy"]:
            state.update(
                best_accuracy=validation_accuracy, best_epoch=epoch + 1, best_model=copy.deepcopy(model.state_dict())
            )
        state["seconds_used"] += time.perf_counter() - started
        state["history"].append(
            {"epoch": epoch + 1, "trainLoss": train_loss, "validationAccuracy": validation_accuracy}
        )
        state.update(
            epoch=epoch + 1,
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
        )
        checkpoint.save(state)
        if on_epoch:
            on_epoch(EpochResult(epoch + 1, config.epochs, train_loss, validation_accuracy, state["seconds_used"]))
    model.load_state_dict(state["best_model"])
    model.eval()
    return TrialResult(
        model=model,
        best_validation_accuracy=state["best_accuracy"],
        best_epoch=state["best_epoch"],
        history=state["history"],
        seconds_used=state["seconds_used"],
        starts=state["starts"],
    )
