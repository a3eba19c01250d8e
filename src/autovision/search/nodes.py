"""One search over several nodes: node 0 serves the study over gRPC, the other nodes' workers join it.

Every pod of a TrainingJob's Indexed Job runs ``run_node``. Node 0 keeps the
study's journal as a single node does (``StudyStore``), serves it with Optuna's
gRPC storage proxy, uploads it to storage every ``PUSH_INTERVAL_SECONDS`` as
well (the other nodes' trials reach it between its own epochs), and once its
own workers stop, waits for the other nodes' last trials before it summarises
the search and fits the final model. The other nodes ("members") wait for the
server, run their workers against it (one per GPU), say they are done and
exit: they write no progress.json and no model; node 0 does.

A member that stays silent for ``NODE_SILENCE_SECONDS`` (its pod gone for
good) is not waited for. The nodes' states are user attributes of the study
itself, so they survive with the journal. Members stop when node 0's server
goes away; so when node 0 starts (again, after a preemption), every member is
marked lost and the trials members left running are resumed by whichever
worker asks next, from their checkpoints.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import grpc
import optuna
from optuna.storages._grpc.server import make_server
from optuna.trial import FrozenTrial, TrialState

from autovision.progress import Reporter
from autovision.search.job import WORKERS_PER_NODE, ImageCache, SearchJob
from autovision.search.study import (
    StudyStore,
    StudyUnreachableError,
    accepts_connections,
    open_study,
    parse_address,
)
from autovision.search.worker import recover_interrupted, run_workers

# Node 0 uploads the journal at least this often while it serves other nodes.
PUSH_INTERVAL_SECONDS = 30.0
# A member with no news for this long is not waited for.
NODE_SILENCE_SECONDS = 900.0
# How often node 0 looks at the members while it waits for them.
POLL_SECONDS = 2.0
SEARCHING = "searching"
FINISHED = "finished"
LOST = "lost"

log = logging.getLogger(__name__)


# --- pure: which members node 0 still waits for --------------------------------


@dataclass(frozen=True)
class NodeState:
    """What a member last said of itself, and when (seconds since the epoch)."""

    state: str
    at: float


def node_attr(node: int) -> str:
    """The study user attribute that holds a member's state."""
    return f"node{node}"


def node_states(study_attrs: Mapping[str, Any], nodes: int) -> dict[int, NodeState]:
    """The members that have joined the search, by node number."""
    states = {}
    for node in range(1, nodes):
        value = study_attrs.get(node_attr(node))
        if isinstance(value, dict):
            states[node] = NodeState(str(value["state"]), float(value["at"]))
    return states


def last_news(node: int, state: NodeState, trials: Sequence[FrozenTrial]) -> float:
    """When a member was last heard of: its own state, or the latest epoch of its running trials."""
    times = [
        float(trial.user_attrs.get("updatedAt", 0.0))
        for trial in trials
        if trial.state == TrialState.RUNNING and int(trial.user_attrs.get("worker", -1)) // WORKERS_PER_NODE == node
    ]
    return max([state.at, *times])


def members_to_wait_for(
    study_attrs: Mapping[str, Any], trials: Sequence[FrozenTrial], nodes: int, now: float, silence: float
) -> list[int]:
    """The members still searching and heard of within ``silence`` seconds: node 0 waits for their trials."""
    return [
        node
        for node, state in node_states(study_attrs, nodes).items()
        if state.state == SEARCHING and now - last_news(node, state, trials) < silence
    ]


# --- I/O: serving, joining, waiting ----------------------------------------------


def _set_state(study: optuna.Study, node: int, state: str) -> None:
    study.set_user_attr(node_attr(node), {"state": state, "at": time.time()})


class StudyServer:
    """Node 0's study, served over gRPC to the other nodes and uploaded on a timer while it is."""

    def __init__(self, store: StudyStore, port: int, push_interval: float = PUSH_INTERVAL_SECONDS) -> None:
        self.store = store
        self.port = port
        self.push_interval = push_interval
        self._server: grpc.Server | None = None
        self._stop = threading.Event()
        self._pusher = threading.Thread(target=self._push_periodically, name="study-push", daemon=True)

    def __enter__(self) -> Self:
        # Every interface: the other nodes connect through the Job's headless Service.
        server = make_server(self.store.optuna_storage(), "0.0.0.0", self.port)
        server.start()
        self._server = server
        self._pusher.start()
        log.info("serving the study to the other nodes on port %d", self.port)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._pusher.join()
        if self._server is not None:
            self._server.stop(grace=5).wait()
        self.store.push()

    def _push_periodically(self) -> None:
        while not self._stop.wait(self.push_interval):
            self.store.push()


def _run_coordinator(job: SearchJob, images: ImageCache, reporter: Reporter, silence: float) -> None:
    """Node 0: serve the study, run this node's workers, then wait for the members' last trials."""
    assert job.settings.coordinator is not None
    store = job.study_store(images.storage)
    study = open_study(store, job.space, job.settings.seed)
    _adopt_members_work(study, job)
    store.push()
    with StudyServer(store, parse_address(job.settings.coordinator)[1]):
        run_workers(job, images, reporter)
        reporter.stage("Waiting for the other nodes' trials", total=None)
        while waiting := members_to_wait_for(
            study.user_attrs, study.get_trials(deepcopy=False), job.settings.nodes, time.time(), silence
        ):
            reporter.update(0, f"nodes {', '.join(map(str, waiting))} still training")
            time.sleep(POLL_SECONDS)


def _adopt_members_work(study: optuna.Study, job: SearchJob) -> None:
    """Before serving: no member can be connected yet, so those that said they were searching are gone."""
    for node, state in node_states(study.user_attrs, job.settings.nodes).items():
        if state.state == SEARCHING:
            _set_state(study, node, LOST)
    recover_interrupted(study, job, lambda worker: worker >= WORKERS_PER_NODE)


def _run_member(job: SearchJob, images: ImageCache, reporter: Reporter) -> None:
    """A node other than node 0: join node 0's study, run this node's workers, say so when done."""
    backend = job.study_backend(images.storage)
    log.info("node %d joins node 0's study at %s", job.settings.node, job.settings.coordinator)
    try:
        study = open_study(backend, job.space, job.settings.seed)
    except StudyUnreachableError as error:
        log.warning("node %d has no search to join: %s", job.settings.node, error)
        return
    _set_state(study, job.settings.node, SEARCHING)
    run_workers(job, images, reporter)
    try:
        _set_state(study, job.settings.node, FINISHED)
    except grpc.RpcError as error:
        log.warning("node %d could not report its end: the study server is gone (%s)", job.settings.node, error)


def coordinator_serving(address: str, timeout: float = 5.0) -> bool:
    """Whether node 0's study server accepts connections: while it does, node 0 is still searching."""
    return accepts_connections(*parse_address(address), timeout=timeout)


def run_node(job: SearchJob, images: ImageCache, reporter: Reporter, silence: float = NODE_SILENCE_SECONDS) -> None:
    """This node's part of the search: all of it on a single node, else as node 0 or as a member."""
    if job.settings.nodes == 1:
        run_workers(job, images, reporter)
    elif job.settings.is_member_node:
        _run_member(job, images, reporter)
    else:
        _run_coordinator(job, images, reporter, silence)
