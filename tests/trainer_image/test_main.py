"""The trainer image's entry point, as the operator's Jobs run it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autovision.contract import env
from autovision.contract.exit_codes import BAD_INPUT, TEMPORARY_FAILURE
from autovision.contract.files import RANK_LOST_PHASE, ModelCard, Progress
from autovision.contract.keys import RunLocation
from autovision.embedded_s3 import EmbeddedS3, free_port
from autovision.search.records import write_progress
from autovision.storage import Storage
from autovision_trainer.__main__ import report_rank_lost, run
from tests.support.datasets import labelled, write_zip
from tests.support.runs import tiny_cnn_weights, write_finished_run
from tests.support.search import wait_for_line


@pytest.fixture
def storage_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    root = f"file://{tmp_path / 'storage'}"
    monkeypatch.setenv("AUTOVISION_STORAGE_ROOT", root)
    return Storage(root)


@pytest.mark.training
def test_import_then_train_within_budget(
    storage_root: Storage, digits_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("autovision.search.probe.estimate_minimum_budget", lambda job, images: 1)  # tests/search
    assert run(["import", "--name", "digits", "--source", f"file://{digits_zip}"]) == 0
    version = storage_root.read_json("datasets/digits/latest.json")["version"]
    assert not storage_root.exists("datasets/digits/import-progress.json"), "the import's progress file is gone"

    budget = 6  # 21.6 seconds: enough for a validated model; the search's share ends inside its first trial
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u1", "--dataset", "digits"]
    args += ["--dataset-version", version, "--budget-milli-node-hours", str(budget), "--optimize-for", "LowLatency"]
    assert run(args) == 0
    progress = storage_root.read_json("runs/ns/tj/u1/progress.json")
    card = ModelCard.model_validate(storage_root.read_json("runs/ns/tj/u1/model/model.json"))
    assert progress["phase"] == "Succeeded"
    assert progress["artifacts"]["onnx"].endswith("runs/ns/tj/u1/model/model.onnx")
    assert progress["best"]["trial"] == card.search["chosenTrial"]
    assert sum(progress["trials"].values()) == len(card.search["trials"]) >= 1
    assert card.search["optimizeFor"] == "LowLatency"
    assert card.search["stopReason"] == "budget"
    assert 1 <= card.metrics.epochs_trained < 12, "the budget must stop training before all epochs"
    assert card.milli_node_hours_used <= budget, "the budget is a ceiling"


def test_import_pods_pack_their_slices_and_pod_0_merges(
    storage_root: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["import", "--name", "pets", "--source", f"file://{write_zip(tmp_path / 'pets.zip', labelled(10))}"]
    monkeypatch.setenv(env.JOB_COMPLETION_INDEX, "1")
    assert run([*args, "--slices", "2"]) == 0
    assert not storage_root.exists("datasets/pets/latest.json"), "pod 1 only packs its slice"
    monkeypatch.setenv(env.JOB_COMPLETION_INDEX, "0")
    assert run([*args, "--slices", "2"]) == 0
    version = storage_root.read_json("datasets/pets/latest.json")["version"]
    assert not storage_root.exists("datasets/pets/import-progress.json")
    monkeypatch.delenv(env.JOB_COMPLETION_INDEX)
    assert run(args) == 0
    assert storage_root.read_json("datasets/pets/latest.json")["version"] == version


def test_an_unknown_task_exits_with_the_bad_input_code(storage_root: Storage, digits_zip: Path) -> None:
    code = run(["import", "--name", "d", "--source", f"file://{digits_zip}", "--task", "Regression"])
    assert code == BAD_INPUT
    assert storage_root.list_keys("") == []


def test_bad_source_exits_with_the_bad_input_code(storage_root: Storage, tmp_path: Path) -> None:
    not_a_zip = tmp_path / "x.zip"
    not_a_zip.write_text("hello")
    code = run(["import", "--name", "bad", "--source", f"file://{not_a_zip}"])
    assert code == BAD_INPUT
    assert storage_root.list_keys("") == []


def test_a_source_outside_the_allowed_schemes_exits_with_the_bad_input_code(
    storage_root: Storage, digits_zip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator sets AUTOVISION_IMPORT_URI_SCHEMES on import Jobs: a pod's own file:// is refused."""
    monkeypatch.setenv("AUTOVISION_IMPORT_URI_SCHEMES", "s3,http,https")
    code = run(["import", "--name", "d", "--source", f"file://{digits_zip}"])
    assert code == BAD_INPUT
    assert "this installation imports only from s3://, http://, https://" in caplog.text
    assert storage_root.list_keys("") == []


def train_args(version: str, *extra: str) -> list[str]:
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u2", "--dataset", "digits"]
    return [*args, "--dataset-version", version, "--budget-milli-node-hours", "10", *extra]


def test_an_export_format_the_image_cannot_write_fails_before_training(
    storage_root: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)  # no .venv-executorch here
    assert run(train_args("sha256-00", "--export-format", "executorch")) == BAD_INPUT
    assert "cannot export executorch" in caplog.text
    assert storage_root.list_keys("") == [], "nothing read, trained or written"


def test_other_pods_of_an_indexed_job_join_node_0_or_stop_when_there_is_none(
    storage_root: Storage, digits_zip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["import", "--name", "digits", "--source", f"file://{digits_zip}"]) == 0
    version = storage_root.read_json("datasets/digits/latest.json")["version"]
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")

    assert run(train_args(version, "--nodes", "2")) == BAD_INPUT, "several nodes need a coordinator"

    # As the operator sets it; nobody serves there: node 0 has ended the search (or never started one).
    coordinator = f"127.0.0.1:{free_port()}"
    assert run(train_args(version, "--nodes", "2", "--coordinator", coordinator, "--connect-timeout", "1")) == 0
    assert storage_root.list_keys("runs") == []


@pytest.mark.training
def test_two_pods_of_an_indexed_job_run_one_search_and_pod_0_exports(
    storage_root: Storage, digits_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["import", "--name", "digits", "--source", f"file://{digits_zip}"]) == 0
    version = storage_root.read_json("datasets/digits/latest.json")["version"]
    nodes = ("--nodes", "2", "--coordinator", f"127.0.0.1:{free_port()}", "--workers", "1")
    # Pod 1 starts first and waits for pod 0's study server, as it may in a cluster.
    log = tmp_path / "pod-1.log"
    with log.open("w") as output:
        pod_1 = subprocess.Popen(
            [sys.executable, "-m", "autovision_trainer", *train_args(version, *nodes)],
            env={**os.environ, "JOB_COMPLETION_INDEX": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "0")
    monkeypatch.setattr("autovision.search.probe.estimate_minimum_budget", lambda job, images: 1)  # tests/search
    try:
        # Pod 0 starts once pod 1 has loaded its images, so pod 1's start-up on a loaded machine
        # cannot outlast the whole budget and leave it no trial.
        wait_for_line(log, "joins node 0's study", pod_1)
        pod_0 = run(train_args(version, *nodes))
    finally:
        pod_1.wait(timeout=300)
    assert pod_0 == 0
    assert pod_1.returncode == 0, log.read_text()
    assert "the search is over" in log.read_text()

    card = ModelCard.model_validate(storage_root.read_json("runs/ns/tj/u2/model/model.json"))
    workers = {trial["worker"] for trial in card.search["trials"]}
    assert workers == {0, 100}, "pod 0's worker and pod 1's worker (node 1, GPU 0) trained trials"
    assert all(trial["state"] in ("Complete", "Pruned", "StoppedByBudget") for trial in card.search["trials"])
    assert card.search["chosenTrial"] in {trial["trial"] for trial in card.search["trials"]}
    assert storage_root.exists("runs/ns/tj/u2/model/model.onnx")


def use_s3(monkeypatch: pytest.MonkeyPatch, root: str, retry_seconds: float, s3: EmbeddedS3 | None = None) -> None:
    """The trainer's environment as a Job sets it for S3 (``s3``, or a port nobody listens on), retry time set."""
    monkeypatch.setenv(env.STORAGE_ROOT, root)
    monkeypatch.setenv(env.S3_ENDPOINT_URL, s3.endpoint_url if s3 else f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv(env.S3_ACCESS_KEY_ID, s3.access_key if s3 else "key")
    monkeypatch.setenv(env.S3_SECRET_ACCESS_KEY, s3.secret_key if s3 else "secret")
    monkeypatch.setenv(env.STORAGE_RETRY_SECONDS, str(retry_seconds))


@pytest.mark.e2e  # waits out real connection retries against a closed port
@pytest.mark.parametrize("command", ["import", "train"])
def test_storage_that_stays_down_exits_with_the_temporary_failure_code(
    command: str, digits_zip: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at the endpoint: retried for the (shortened) retry time, then the Job may retry the pod."""
    use_s3(monkeypatch, "s3://autovision/down", retry_seconds=1)
    args = ["import", "--name", "d", "--source", f"file://{digits_zip}"] if command == "import" else train_args("v1")
    assert run(args) == TEMPORARY_FAILURE
    assert "storage unavailable, the Job retries this pod" in caplog.text
    assert "storage unavailable for 1 s (EndpointConnectionError" in caplog.text


def test_bad_input_on_reachable_s3_fails_at_once(
    embedded_s3: EmbeddedS3, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing source or dataset version is bad input, not an outage: no retries, whatever the retry time."""
    root = f"{embedded_s3.settings().storage_root}/bad-input"
    use_s3(monkeypatch, root, retry_seconds=600, s3=embedded_s3)
    started = time.monotonic()
    missing_source = f"{root}/no-such.zip"
    assert run(["import", "--name", "d", "--source", missing_source]) == BAD_INPUT
    assert run(train_args("sha256-00")) == BAD_INPUT
    assert time.monotonic() - started < 60, "bad input was retried"
    assert "retrying in" not in caplog.text


def test_a_lost_rank_keeps_what_progress_said_of_the_search(storage_root: Storage) -> None:
    run_location = RunLocation("ns", "tj", "u3")
    searched = Progress(phase="Searching", milli_node_hours_used=12, search_milli_node_hours_used=12)
    write_progress(storage_root, run_location.prefix, searched)
    report_rank_lost(storage_root, run_location, "rank 1 did not join within 600 s")
    lost = Progress.model_validate(storage_root.read_json(f"{run_location.prefix}/progress.json"))
    assert (lost.phase, lost.message) == (RANK_LOST_PHASE, "rank 1 did not join within 600 s")
    assert lost.milli_node_hours_used == lost.search_milli_node_hours_used == 12


def test_a_base_model_that_is_missing_or_does_not_fit_exits_with_the_bad_input_code(
    storage_root: Storage, tmp_path: Path, model_card: ModelCard
) -> None:
    assert run(["import", "--name", "pets", "--source", str(write_zip(tmp_path / "pets.zip", labelled(12)))]) == 0
    version = storage_root.read_json("datasets/pets/latest.json")["version"]
    args = ["train", "--namespace", "ns", "--job", "tj", "--uid", "u3", "--dataset", "pets"]
    args += ["--dataset-version", version, "--budget-milli-node-hours", "10", "--base-model", "runs/ns/served/u0"]
    assert run(args) == BAD_INPUT  # no such run

    write_finished_run(storage_root, "runs/ns/served/u0", model_card, tiny_cnn_weights(2))  # labels a, b
    assert run(args) == BAD_INPUT
    assert storage_root.list_keys("runs/ns/tj") == []
