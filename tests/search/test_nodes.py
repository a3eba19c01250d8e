"""One search over several nodes: node 0 serves the study with Optuna's gRPC storage proxy, node 1 joins it.

The two nodes are two processes on 127.0.0.1 sharing a real S3 endpoint
(SeaweedFS) as two pods share their bucket; the Kubernetes side (an Indexed Job
and its headless Service) is tested with the operator's builders.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from autovision.data.importer import import_dataset
from autovision.embedded_s3 import EmbeddedS3, free_port
from autovision.progress import LogReporter
from autovision.search.job import WORKERS_PER_NODE, ImageCache, SearchSettings
from autovision.search.nodes import (
    NODE_SILENCE_SECONDS,
    SEARCHING,
    coordinator_serving,
    members_to_wait_for,
    node_attr,
    run_node,
)
from autovision.search.study import StudyStore, open_study
from autovision.search.summary import summarise
from autovision.storage import Storage
from tests.support.search import digits_subset_zip, run_search_worker, search_job, tiny_space, wait_for_line

ROOT = Path(__file__).resolve().parents[2]


def trial(number: int, worker: int, state: TrialState, updated_at: float) -> FrozenTrial:
    return optuna.trial.create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        user_attrs={"worker": worker, "updatedAt": updated_at},
    )


def test_node_0_waits_only_for_members_searching_and_heard_of() -> None:
    now, silence = 10_000.0, 100.0
    attrs = {
        node_attr(1): {"state": SEARCHING, "at": now - 500},  # joined long ago, but its trial reported lately
        node_attr(2): {"state": "finished", "at": now - 1},
        node_attr(3): {"state": SEARCHING, "at": now - 500},  # silent: its pod is gone
        node_attr(4): {"state": SEARCHING, "at": now - 5},  # just joined
    }
    trials = [
        trial(0, 1 * WORKERS_PER_NODE, TrialState.RUNNING, now - 10),
        trial(1, 3 * WORKERS_PER_NODE, TrialState.RUNNING, now - 400),
        trial(2, 3 * WORKERS_PER_NODE + 1, TrialState.COMPLETE, now - 1),  # finished trials are no news
    ]
    assert members_to_wait_for(attrs, trials, nodes=5, now=now, silence=silence) == [1, 4]
    assert members_to_wait_for(attrs, trials, nodes=2, now=now, silence=silence) == [1]
    assert members_to_wait_for({}, trials, nodes=5, now=now, silence=silence) == [], "nodes that never joined"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"node": 2, "nodes": 2, "coordinator": "h:1"}, "node 2 is not one of the 2 nodes"),
        ({"nodes": 2}, "needs the coordinator"),
        ({"workers": WORKERS_PER_NODE + 1}, "workers per node"),
    ],
)
def test_settings_of_a_node_are_checked(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSettings(**changes)  # type: ignore[arg-type]


def s3_environment(s3: EmbeddedS3) -> dict[str, str]:
    settings = s3.settings()
    assert settings.s3_access_key_id is not None
    assert settings.s3_secret_access_key is not None
    return {
        **os.environ,
        "AUTOVISION_S3_ENDPOINT_URL": str(settings.s3_endpoint_url),
        "AWS_ACCESS_KEY_ID": settings.s3_access_key_id.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_access_key.get_secret_value(),
    }


@pytest.mark.training
def test_two_nodes_share_one_study_through_node_0(s3_storage: Storage, embedded_s3: EmbeddedS3, tmp_path: Path) -> None:
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=24)), "digits", s3_storage)
    coordinator = f"127.0.0.1:{free_port()}"
    prefix = "runs/test/nodes/u"
    node_1 = [sys.executable, "-m", "tests.support.search", s3_storage.uri(""), "digits", dataset.version, prefix]
    node_1 += ["10", "--slow", "--node", "1", "--nodes", "2", "--coordinator", coordinator]
    # Node 1 starts first and waits for node 0's server, as a pod scheduled early does.
    log = tmp_path / "node-1.log"
    with log.open("w") as output:
        member = subprocess.Popen(node_1, cwd=ROOT, env=s3_environment(embedded_s3), stderr=output)
    settings = SearchSettings(
        early_stopping=False, max_trials=10, nodes=2, coordinator=coordinator, work_dir=tmp_path / "node-0"
    )
    job = search_job(s3_storage, dataset.records, prefix, space=tiny_space(slow=True), settings=settings)
    try:
        # Node 0 starts once node 1 has loaded its images, so node 1's start-up on a loaded machine cannot
        # outlast node 0's whole (short) search and leave it nothing to join.
        wait_for_line(log, "joins node 0's study", member)
        run_search_worker(job)
    finally:
        member.wait(timeout=300)
    assert member.returncode == 0, log.read_text()

    # A fresh node restores the journal from S3: node 0 uploaded what both nodes did.
    store = StudyStore(s3_storage, prefix, tmp_path / "fresh-node")
    store.restore()
    study = optuna.load_study(study_name="search", storage=store.optuna_storage())
    trials = study.get_trials()
    assert {trial.user_attrs["worker"] for trial in trials} == {0, WORKERS_PER_NODE}, "both nodes trained trials"
    assert [trial.number for trial in trials] == list(range(len(trials)))
    assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials), (
        "node 0 waited for node 1's last trial"
    )
    assert 10 <= len(trials) <= 11, "each node may start one trial past the cap"
    assert len({trial.user_attrs["checkpoint"] for trial in trials}) == len(trials)
    assert study.user_attrs[node_attr(1)]["state"] == "finished"
    assert not s3_storage.exists(f"{prefix}/model/model.json")
    result = summarise(job, ImageCache(job.records, job.labels, s3_storage))
    assert result.chosen.value is not None
    assert len(result.trials) == len(trials)


def test_a_member_with_no_search_to_join_stops_without_writing(file_storage: Storage, tmp_path: Path) -> None:
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=10)), "digits", file_storage)
    unreachable = f"127.0.0.1:{free_port()}"
    settings = SearchSettings(node=1, nodes=2, coordinator=unreachable, connect_timeout=1.0)
    job = search_job(file_storage, dataset.records, "runs/test/alone/u", space=tiny_space(), settings=settings)
    before = set(file_storage.list_keys(""))

    run_node(job, ImageCache(job.records, job.labels, file_storage), LogReporter())

    assert set(file_storage.list_keys("")) == before


@pytest.mark.training
def test_node_0_starting_again_resumes_what_a_lost_member_left_running(file_storage: Storage, tmp_path: Path) -> None:
    dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=10)), "digits", file_storage)
    settings = SearchSettings(early_stopping=False, max_trials=3, nodes=2, coordinator=f"127.0.0.1:{free_port()}")
    job = search_job(file_storage, dataset.records, "runs/test/restart/u", space=tiny_space(), settings=settings)
    # What node 0's journal held when it was preempted: node 1 searching, its trial mid-way.
    study = open_study(StudyStore(file_storage, job.prefix), job.space, seed=0)
    orphan = study.ask()
    job.space.suggest(orphan)
    orphan.set_user_attr("worker", WORKERS_PER_NODE)
    study.set_user_attr(node_attr(1), {"state": SEARCHING, "at": time.time()})

    started = time.monotonic()
    run_search_worker(job)  # node 0 again; node 1 is gone for good

    assert time.monotonic() - started < NODE_SILENCE_SECONDS / 10, "node 0 did not wait for the lost node"
    trials = optuna.load_study(study_name="search", storage=StudyStore(file_storage, job.prefix).optuna_storage())
    assert trials.user_attrs[node_attr(1)]["state"] == "lost"
    by_number = {trial.number: trial for trial in trials.get_trials()}
    assert by_number[orphan.number].state == TrialState.FAIL
    resumed = [trial for trial in by_number.values() if trial.user_attrs.get("resumedFrom") == orphan.number]
    assert len(resumed) == 1
    assert resumed[0].params == orphan.params
    assert resumed[0].user_attrs["worker"] == 0
    assert resumed[0].state == TrialState.COMPLETE


def test_node_0_is_searching_while_its_study_server_accepts_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert coordinator_serving(address)
    assert not coordinator_serving(address, timeout=1.0)
