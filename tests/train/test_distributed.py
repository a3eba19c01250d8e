"""Data-parallel training: real processes on the gloo backend, against one process accumulating gradients."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from autovision.embedded_s3 import free_port
from autovision.preprocess import PreprocessConfig
from autovision.storage import Storage
from autovision.train.distributed import DataParallelError, check_nproc, per_rank_batch, train_data_parallel
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import ImageSet, normalise
from autovision.train.models import build_model
from autovision.train.trainer import (
    TrainConfig,
    TrialCheckpoint,
    build_optimizer,
    epoch_seed,
    learning_rate_factor,
    loss_of,
)

PREPROCESS = PreprocessConfig(size=8)
# No dropout, augmentation or mixing: their random draws would differ between ranks and micro-batches.
CONFIG = TrainConfig(
    epochs=2, batch_size=16, warmup_epochs=0.5, architecture=ResidualCNNConfig(width=4, stages=2, dropout=0.0)
)
# Parameters after a few AdamW steps agree to float32 rounding of the summed gradients.
TOLERANCE = 1e-5


def digits(count: int) -> ImageSet:
    """The first scikit-learn digits as 8x8 RGB uint8 images: small enough for a test of seconds."""
    from sklearn.datasets import load_digits

    loaded = load_digits()
    gray = torch.tensor(loaded.images[:count] * 255 / 16, dtype=torch.uint8)
    targets = torch.nn.functional.one_hot(torch.tensor(loaded.target[:count]), 10).float()
    return ImageSet(gray[:, None].repeat(1, 3, 1, 1).contiguous(), targets, [f"digit/{i}" for i in range(count)])


def accumulated(train: ImageSet, config: TrainConfig, micro_batches: int) -> torch.nn.Module:
    """The single-process reference: each global batch as ``micro_batches`` strided micro-batches, gradients
    averaged before one optimiser step."""
    torch.manual_seed(config.seed)
    model = build_model(config.architecture, train.targets.shape[1])
    steps = len(train) // config.batch_size
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(config, steps))
    model.train()
    for epoch in range(config.epochs):
        torch.manual_seed(epoch_seed(config.seed, epoch))
        order = torch.randperm(len(train))
        for start in range(0, steps * config.batch_size, config.batch_size):
            batch = order[start : start + config.batch_size]
            optimizer.zero_grad(set_to_none=True)
            for rank in range(micro_batches):
                micro = batch[rank::micro_batches]
                logits = model(normalise(train.pixels[micro], PREPROCESS))
                loss = loss_of(logits, train.targets[micro], False, config.label_smoothing) / micro_batches
                loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
    return model


# On a loaded machine a rank (a spawned interpreter importing torch) may take long to join.
SLOW_JOIN = timedelta(seconds=300)


def largest_difference(model: torch.nn.Module, other: torch.nn.Module) -> float:
    """The largest absolute difference between two models' trainable parameters (not their buffers)."""
    pairs = zip(model.parameters(), other.parameters(), strict=True)
    return max(float((a.detach() - b.detach()).abs().max()) for a, b in pairs)


def test_nproc_above_the_cores_is_refused() -> None:
    check_nproc(2, 2)
    with pytest.raises(ValueError, match="--nproc 3 is more than the 2 CPU cores"):
        check_nproc(3, 2)


def test_the_global_batch_must_divide_over_the_ranks() -> None:
    assert per_rank_batch(64, 4) == 16
    with pytest.raises(ValueError, match="does not divide"):
        per_rank_batch(10, 4)


@pytest.mark.training
def test_two_processes_match_one_process_accumulating_two_micro_batches(tmp_path: Path) -> None:
    """Batch norm normalises each micro-batch alike in both; running statistics differ (rank 0's only under
    DDP), so the trainable parameters are compared, not the buffers."""
    train = digits(64)
    checkpoint = TrialCheckpoint(Storage(f"file://{tmp_path}"), "final/checkpoint.pt")
    result = train_data_parallel(train, CONFIG, PREPROCESS, checkpoint=checkpoint, nproc=2, threads=1)
    reference = accumulated(train, CONFIG, micro_batches=2)
    assert result.epochs_trained == CONFIG.epochs
    assert result.seconds_used > 0
    assert largest_difference(result.model, reference) < TOLERANCE
    # The comparison can fail: one process on the whole batch at once normalises differently.
    assert largest_difference(result.model, accumulated(train, CONFIG, micro_batches=1)) > 100 * TOLERANCE


@pytest.mark.training
def test_two_nodes_meet_at_node_0s_rendezvous_as_one_process_group(tmp_path: Path) -> None:
    """Two "nodes" of one process each (as two pods of an Indexed Job): ranks 0 and 1 of one group."""
    train = digits(64)
    checkpoint = TrialCheckpoint(Storage(f"file://{tmp_path}"), "final/checkpoint.pt")
    rendezvous = f"127.0.0.1:{free_port()}"
    member: list[float] = []

    def node_1() -> None:
        fitted = train_data_parallel(
            train,
            CONFIG,
            PREPROCESS,
            checkpoint=checkpoint,
            nproc=1,
            threads=1,
            node=1,
            nodes=2,
            rendezvous=rendezvous,
            timeout=SLOW_JOIN,
        )
        member.append(fitted.seconds_used)

    other = threading.Thread(target=node_1)
    other.start()
    result = train_data_parallel(
        train,
        CONFIG,
        PREPROCESS,
        checkpoint=checkpoint,
        nproc=1,
        threads=1,
        node=0,
        nodes=2,
        rendezvous=rendezvous,
        timeout=SLOW_JOIN,
    )
    other.join(SLOW_JOIN.total_seconds())
    assert largest_difference(result.model, accumulated(train, CONFIG, micro_batches=2)) < TOLERANCE
    assert member == [result.seconds_used], "both nodes count the device time of every rank"


@pytest.mark.training
def test_a_node_that_never_joins_fails_the_phase_within_the_timeout(tmp_path: Path) -> None:
    checkpoint = TrialCheckpoint(Storage(f"file://{tmp_path}"), "final/checkpoint.pt")
    started = time.monotonic()
    with pytest.raises(DataParallelError, match="did not join within 3 s"):
        train_data_parallel(
            digits(32),
            CONFIG,
            PREPROCESS,
            checkpoint=checkpoint,
            nproc=1,
            threads=1,
            timeout=timedelta(seconds=3),
            nodes=2,
            rendezvous=f"127.0.0.1:{free_port()}",
        )
    assert time.monotonic() - started < 30
    assert checkpoint.load() is None


@pytest.mark.training
def test_a_killed_rank_fails_the_phase_within_the_timeout_and_a_rerun_resumes(tmp_path: Path) -> None:
    train, config = digits(64), TrainConfig(epochs=1000, batch_size=16, architecture=CONFIG.architecture)
    checkpoint = TrialCheckpoint(Storage(f"file://{tmp_path}"), "final/checkpoint.pt")
    timeout = timedelta(seconds=10)
    failures: list[BaseException] = []

    def fit() -> None:
        try:
            train_data_parallel(train, config, PREPROCESS, checkpoint=checkpoint, nproc=2, threads=1, timeout=timeout)
        except BaseException as error:  # noqa: BLE001 - handed to the test's thread
            failures.append(error)

    phase = threading.Thread(target=fit)
    phase.start()
    deadline = time.monotonic() + 60
    while not (tmp_path / "final/checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ranks = multiprocessing.active_children()
    assert len(ranks) == 2
    assert ranks[-1].pid is not None
    killed_at = time.monotonic()
    os.kill(ranks[-1].pid, signal.SIGKILL)
    phase.join(timeout.total_seconds())
    assert not phase.is_alive()
    assert time.monotonic() - killed_at < timeout.total_seconds()
    assert len(failures) == 1
    assert isinstance(failures[0], DataParallelError)
    assert "SIGKILL" in str(failures[0])

    done = checkpoint.load()
    assert done is not None
    assert done["epoch"] >= 1
    resumed = train_data_parallel(train, config, PREPROCESS, checkpoint=checkpoint, nproc=2, threads=1, max_seconds=1)
    assert resumed.starts[-1] >= done["epoch"]
