"""The run's Optuna study, shared by all its workers through Optuna's JournalStorage.

The journal is an append-only log of every study operation, written through
Optuna's file backend and its lock, so several worker processes can ask for and
report trials concurrently.

* ``file://`` storage: the journal is the file in storage itself, shared by every
  worker that sees that file system.
* object storage: the workers of one machine share a local copy in a work
  directory. It is restored from storage when it does not extend the copy
  there (a new pod after a preemption) and uploaded after every epoch and trial
  while holding the journal's lock, so uploads never go backwards and a kill
  loses at most the epoch in progress.
* several nodes: node 0 keeps the journal as above and serves it with Optuna's
  gRPC storage proxy (``autovision.search.nodes``); the workers of the other
  nodes reach the study through it (``RemoteStudy``).

Proposals come from TPE and the multi-fidelity schedule from Hyperband: both are
Optuna's. The sampler is reseeded from (seed, trials so far) before every
proposal, so a search with a given seed and history proposes the same trials
whether or not it was interrupted.
"""

from __future__ import annotations

import hashlib
import posixpath
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner, HyperbandPruner, NopPruner
from optuna.samplers import TPESampler
from optuna.storages import BaseStorage, GrpcStorageProxy
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock, JournalStorage

from autovision.contract.keys import study_journal_key
from autovision.search.space import Space
from autovision.storage import Storage

STUDY_NAME = "search"
# Random proposals before TPE models the results: few, because budgets buy few trials.
STARTUP_TRIALS = 5
# Hyperband's smallest rung: one epoch says little while the learning rate warms up.
MIN_RESOURCE = 2
REDUCTION_FACTOR = 3


class StudyBackend(Protocol):
    """Where a worker's study operations go: the run's journal on this node, or node 0's over gRPC."""

    def restore(self) -> None:
        """Prepare the study's storage before the study is opened."""

    def push(self) -> None:
        """Make what the study holds now durable beyond this node."""

    def optuna_storage(self) -> BaseStorage:
        """The Optuna storage the study is opened on."""
        ...


class StudyStore:
    """Where one run's study journal lives, and its copy in object storage."""

    def __init__(self, storage: Storage, prefix: str, work_dir: Path | None = None) -> None:
        self.storage = storage
        self.key = study_journal_key(prefix)
        self.mirrored = storage.protocol != "file"
        if self.mirrored:
            run_id = hashlib.sha256(storage.uri(self.key).encode()).hexdigest()[:16]
            base = work_dir or Path(tempfile.gettempdir()) / "autovision-studies"
            self.path = base / run_id / posixpath.basename(self.key)
        else:
            self.path = Path(storage.path(self.key))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = JournalFileSymlinkLock(str(self.path))

    def restore(self) -> None:
        """Make the local copy agree with object storage before the study is opened.

        The copy in storage is the truth: a local journal is kept only when it
        extends that copy (this node's workers are ahead of the last upload);
        otherwise it belongs to some other run that used the same path and is
        replaced. A run that has no journal in storage yet gets an empty one
        there first, so that workers starting after this one keep what it writes.
        """
        if not self.mirrored:
            return
        with self._locked():
            if not self.storage.exists(self.key):
                self.storage.write_bytes(self.key, b"")
                self._replace_local(b"")
                return
            remote = self.storage.read_bytes(self.key)
            if not self.path.exists() or not self.path.read_bytes().startswith(remote):
                self._replace_local(remote)

    def _replace_local(self, content: bytes) -> None:
        partial = self.path.with_name(f"{self.path.name}.{uuid.uuid4().hex}")
        partial.write_bytes(content)
        partial.replace(self.path)

    def push(self) -> None:
        """Upload the journal as it is now (object storage only); uploads are serialised by the journal's lock."""
        if not self.mirrored:
            return
        with self._locked():
            self.storage.write_bytes(self.key, self.path.read_bytes())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the lock Optuna's file backend takes for every append."""
        self.lock.acquire()
        try:
            yield
        finally:
            self.lock.release()

    def optuna_storage(self) -> JournalStorage:
        """Optuna's storage over the local journal file."""
        return JournalStorage(JournalFileBackend(str(self.path), lock_obj=self.lock))


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT of node 0's study server, checked."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"study server address {address!r} is not HOST:PORT")
    return host, int(port)


class StudyUnreachableError(RuntimeError):
    """Node 0's study server did not answer in time."""


# How often a node waiting for node 0's study server tries its port.
SERVER_POLL_SECONDS = 1.0


def accepts_connections(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something listens at HOST:PORT (a TCP connection is accepted within ``timeout``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class RemoteStudy:
    """The study as the workers of nodes other than node 0 see it: node 0's journal, through gRPC.

    Node 0 uploads the journal; here there is nothing to restore or push, only a
    server to wait for (node 0 may start after this node).
    """

    def __init__(self, address: str, connect_timeout: float) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.connect_timeout = connect_timeout

    def restore(self) -> None:
        """Wait until node 0 serves the study.

        Its port is polled every second first: a gRPC channel that finds no server backs
        off exponentially (up to two minutes between tries), long enough to miss all of a
        short search that node 0 ran in the meantime.
        """
        deadline = time.monotonic() + self.connect_timeout
        while not accepts_connections(self.host, self.port):
            if time.monotonic() >= deadline:
                raise StudyUnreachableError(f"no study server at {self.address} after {self.connect_timeout:.0f} s")
            time.sleep(SERVER_POLL_SECONDS)
        proxy = self.optuna_storage()
        try:
            proxy.wait_server_ready(timeout=max(1.0, deadline - time.monotonic()))
        except ConnectionError as error:
            raise StudyUnreachableError(
                f"no study server at {self.address} after {self.connect_timeout:.0f} s"
            ) from error
        finally:
            proxy.close()

    def push(self) -> None:
        """Nothing to do: node 0 makes the journal durable."""

    def optuna_storage(self) -> GrpcStorageProxy:
        """A gRPC client of node 0's study server."""
        with warnings.catch_warnings():
            # Experimental since Optuna 4.2; the combination with JournalStorage is tested in this project.
            warnings.simplefilter("ignore", ExperimentalWarning)
            return GrpcStorageProxy(host=self.host, port=self.port)


def sampler_for(seed: int, trials_so_far: int, worker: int = 0) -> TPESampler:
    """TPE seeded by the search's seed, its history and the asking worker (constant liar on, for parallel workers)."""
    return TPESampler(
        seed=((seed * 1_000_003 + trials_so_far) * 1_009 + worker) % 2**32,
        n_startup_trials=STARTUP_TRIALS,
        constant_liar=True,
    )


def pruner_for(space: Space) -> BasePruner:
    """Hyperband over epochs for a real search; nothing is pruned when the space is one fixed configuration."""
    if space.max_trials == 1:
        return NopPruner()
    return HyperbandPruner(
        min_resource=min(MIN_RESOURCE, space.max_epochs),
        max_resource=space.max_epochs,
        reduction_factor=REDUCTION_FACTOR,
    )


def open_study(store: StudyBackend, space: Space, seed: int) -> optuna.Study:
    """Create or load the run's study; a new one starts with the space's warm start.

    A study that has trials keeps them: a resumed search never enqueues a first
    trial again (whichever first trial its probe chose).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store.restore()
    study = optuna.create_study(
        storage=store.optuna_storage(),
        study_name=STUDY_NAME,
        direction="maximize",
        sampler=sampler_for(seed, 0),
        pruner=pruner_for(space),
        load_if_exists=True,
    )
    warm_start = space.warm_start()
    if warm_start is not None and not study.get_trials(deepcopy=False):
        study.enqueue_trial(warm_start, skip_if_exists=True)
    store.push()
    return study


def ask(study: optuna.Study, seed: int, worker: int) -> optuna.Trial:
    """The next trial: an enqueued one (warm start, resumed trial) first, else TPE's proposal."""
    study.sampler = sampler_for(seed, len(study.get_trials(deepcopy=False)), worker)
    return study.ask()
