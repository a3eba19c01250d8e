"""Data-parallel training of one configuration with torch.distributed (DistributedDataParallel).

``train_data_parallel`` spawns N processes on this machine (gloo on the CPU,
nccl with one GPU per rank on CUDA); each runs the trainer's own loop
(``train_trial``) as one ``Replica``. On a cluster every node calls it with
its node number and the same ``rendezvous`` (HOST:PORT of node 0): the ranks
``node * N + local`` of all ``nodes * N`` meet at the c10d TCP store that
rank 0 serves there.

- every rank draws the same shuffled order per epoch (seeded from the
  configuration's seed and the epoch) and takes the images ``rank::N`` of each
  global batch: the global batch and the learning rate stay the configuration's,
  the batch per rank is ``batch_size / N`` (``batch_size`` must divide by N);
- DDP all-reduces (averages) the gradients, so a step equals one process
  accumulating the gradients of the same N micro-batches;
- batch norm: ``SyncBatchNorm`` on CUDA; on the CPU each rank normalises with
  its own micro-batch's statistics, and the running statistics are rank 0's
  (DDP broadcasts its buffers), as with gradient accumulation over micro-batches;
- rank 0 alone writes the checkpoint; the ranks agree on every step, so a
  budget guard stops them all at the same step;
- a rank that dies, or does not join within the timeout, ends the phase with
  ``DataParallelError``; a collective that waits longer than the timeout fails
  instead of hanging.

The seconds returned are summed over the ranks of all nodes: device time, as
``autovision.search.budget`` counts it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch._C._distributed_c10d import Store, TCPStore
from torch.multiprocessing.spawn import ProcessException, start_processes
from torch.nn.parallel import DistributedDataParallel

from autovision.data.inspection import available_cores
from autovision.preprocess import PreprocessConfig
from autovision.train.images import TrainingImages
from autovision.train.trainer import CPU, TrainConfig, TrialCheckpoint, TrialResult, restore_model, train_trial

# How long a collective (the rendezvous included) waits for a rank before the phase fails.
PROCESS_GROUP_TIMEOUT = timedelta(seconds=60)
# Keys on the rendezvous store by which the ranks leave together.
_DESTROYED, _ALL_DESTROYED, _LEFT, _ALL_LEFT = "destroyed", "destroyed/all", "left", "left/all"


class DataParallelError(RuntimeError):
    """A data-parallel phase that could not finish: a rank failed, died or never joined."""


def check_nproc(nproc: int, cores: int) -> None:
    """Refuse more CPU processes than cores: they would only take turns on the same cores."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, not {nproc}")
    if nproc > cores:
        raise ValueError(f"--nproc {nproc} is more than the {cores} CPU cores available to this process")


def per_rank_batch(global_batch: int, world_size: int) -> int:
    """Each rank's share of the global batch (the documented rule: global batch and learning rate unchanged)."""
    if global_batch % world_size:
        raise ValueError(f"the global batch {global_batch} does not divide over {world_size} processes")
    return global_batch // world_size


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class DdpReplica:
    """One rank of a process group, as the trainer's ``Replica``."""

    rank: int
    world_size: int
    device: torch.device

    def prepare(self, model: nn.Module) -> nn.Module:
        """Synchronised batch norm on CUDA; on the CPU each rank keeps its own statistics."""
        if self.device.type == "cuda":
            synced: nn.Module = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # type: ignore[no-untyped-call]
            return synced
        return model

    def wrap(self, model: nn.Module) -> DistributedDataParallel:
        """DDP around the model: its backward averages the gradients over the ranks."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def agree(self, take: bool) -> bool:
        """A step is taken only if every rank takes it."""
        flag = torch.tensor([int(take)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())


@dataclass(frozen=True)
class _RankJob:
    train: TrainingImages
    config: TrainConfig
    preprocess: PreprocessConfig
    checkpoint: TrialCheckpoint
    multi_label: bool
    max_seconds: float | None
    device: torch.device
    threads: int
    host: str
    port: int
    timeout: timedelta
    node: int
    nodes: int
    checkpoint_every_s: float | None


def _rank_main(local_rank: int, nproc: int, job: _RankJob, outcomes: Any) -> None:
    torch.set_num_threads(job.threads)
    device = torch.device("cuda", local_rank) if job.device.type == "cuda" else job.device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world_size = job.node * nproc + local_rank, job.nodes * nproc
    store = TCPStore(job.host, job.port, world_size, is_master=rank == 0, timeout=job.timeout)
    dist.init_process_group(backend_for(device), store=store, rank=rank, world_size=world_size, timeout=job.timeout)
    finished = False
    try:
        trained = train_trial(
            job.train,
            None,
            job.config,
            job.preprocess,
            checkpoint=job.checkpoint,
            multi_label=job.multi_label,
            max_seconds=job.max_seconds,
            device=device,
            replica=DdpReplica(rank, world_size, device),
            checkpoint_every_s=job.checkpoint_every_s,
        )
        dist.barrier()  # rank 0's last checkpoint is written before anyone reports
        seconds = torch.tensor([trained.seconds_used], dtype=torch.float64, device=device)
        dist.all_reduce(seconds)  # device time of every rank of every node
        outcomes.put((local_rank, float(seconds.item()), trained.stopped_inside_epoch))
        finished = True
    finally:
        dist.destroy_process_group()
    if finished:
        _leave_together(store, rank, world_size)


def _leave_together(store: Store, rank: int, world_size: int) -> None:
    """No rank exits while another still tears its process group down, and rank 0 (the store) exits last.

    A gloo peer that closes its connections while a rank is still destroying its
    group can abort that rank (SIGABRT in a clean CI run) after its work was done.
    """
    if store.add(_DESTROYED, 1) == world_size:
        store.set(_ALL_DESTROYED, "1")
    store.wait([_ALL_DESTROYED])
    if store.add(_LEFT, 1) == world_size:
        store.set(_ALL_LEFT, "1")
    if rank == 0:
        store.wait([_ALL_LEFT])


def _rendezvous_of(rendezvous: str | None) -> tuple[str, int]:
    """Node 0's HOST:PORT, or a free local port for a single node."""
    if rendezvous is None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return "127.0.0.1", probe.getsockname()[1]
    host, _, port = rendezvous.rpartition(":")
    return host, int(port)


def train_data_parallel(
    train: TrainingImages,
    config: TrainConfig,
    preprocess: PreprocessConfig,
    *,
    checkpoint: TrialCheckpoint,
    nproc: int,
    multi_label: bool = False,
    max_seconds: float | None = None,
    device: torch.device = CPU,
    threads: int | None = None,
    timeout: timedelta = PROCESS_GROUP_TIMEOUT,
    node: int = 0,
    nodes: int = 1,
    rendezvous: str | None = None,
    checkpoint_every_s: float | None = None,
) -> TrialResult:
    """Train one configuration (no validation set: the final fit) on ``nproc`` local processes; resumable.

    With ``nodes`` > 1 this is node ``node`` of them, and ``rendezvous`` (HOST:PORT,
    node 0's) is where all ranks meet. ``max_seconds`` is device time summed over
    the ranks, and so is the result's ``seconds_used``; the model is the last
    weights rank 0 checkpointed, on the CPU. ``threads`` per rank defaults to the
    available cores shared out. ``checkpoint_every_s`` checkpoints inside long
    epochs too (``train_trial``'s).
    """
    per_rank_batch(config.batch_size, nproc * nodes)
    if nodes > 1 and rendezvous is None:
        raise ValueError("a data-parallel fit over several nodes needs node 0's rendezvous HOST:PORT")
    if device.type != "cuda":
        check_nproc(nproc, available_cores())
    host, port = _rendezvous_of(rendezvous)
    job = _RankJob(
        train=train.to(CPU),
        config=config,
        preprocess=preprocess,
        checkpoint=checkpoint,
        multi_label=multi_label,
        max_seconds=None if max_seconds is None else max_seconds / (nproc * nodes),
        device=device,
        threads=threads or max(1, available_cores() // nproc),
        host=host,
        port=port,
        timeout=timeout,
        node=node,
        nodes=nodes,
        checkpoint_every_s=checkpoint_every_s,
    )
    outcomes = mp.get_context("spawn").SimpleQueue()
    try:
        start_processes(  # type: ignore[no-untyped-call]
            _rank_main, args=(nproc, job, outcomes), nprocs=nproc, join=True, start_method="spawn"
        )
    except ProcessException as error:
        where = f"{nproc} processes" + (f" of node {node} of {nodes}" if nodes > 1 else "")
        raise DataParallelError(
            f"data-parallel training on {where} failed (a rank died, or did not join within "
            f"{timeout.total_seconds():g} s): {error}"
        ) from None
    reports = [outcomes.get() for _ in range(nproc)]
    state = checkpoint.load()
    if state is None:
        raise DataParallelError("data-parallel training ended without a checkpoint")
    model = restore_model(config, train.label_count, checkpoint)
    return TrialResult(
        model=model,
        best_score=state["best_score"],
        best_epoch=state["best_epoch"],
        history=state["history"],
        seconds_used=reports[0][1],
        starts=state["starts"],
        stopped_inside_epoch=any(stopped for _, _, stopped in reports),
    )
