"""The local source's background commands: a failed one shows its error line, a finished upload is removed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from autovision.console.local import Child, LocalSource, train_options
from autovision.console.source import DatasetRef, RunPhase, RunRef, TrainingRequest
from autovision.resources import EdgeFormat
from autovision.storage import Storage


def child(tmp_path: Path, code: str) -> Child:
    log = tmp_path / "child.log"
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=output, stderr=subprocess.STDOUT)
    return Child(process=process, log=log)


def test_a_failed_command_reports_its_error_line_and_cleans_up(tmp_path: Path) -> None:
    upload = tmp_path / "upload.zip"
    upload.write_bytes(b"PK")
    failed = child(tmp_path, "print('working'); print('error: the zip is a bomb'); raise SystemExit(1)")
    failed.cleanup.append(upload)
    failed.process.wait()
    assert failed.failure() == "error: the zip is a bomb"
    assert not upload.exists()


def test_a_successful_command_has_no_failure(tmp_path: Path) -> None:
    done = child(tmp_path, "print('ok')")
    done.process.wait()
    assert done.failure() is None
    assert not done.running


def test_a_started_run_is_pending_then_failed_with_its_message(tmp_path: Path) -> None:
    source = LocalSource(Storage(f"file://{tmp_path / 'storage'}"), tmp_path / "work")
    ref = RunRef(namespace="local", job="pets", uid="u9")
    source.trainings[ref] = child(tmp_path, "import time; time.sleep(30)")
    [pending] = asyncio.run(source.list_runs())
    assert (pending.ref, pending.phase, pending.dataset) == (
        ref,
        RunPhase.PENDING,
        DatasetRef(namespace="local", name="pets"),
    )
    source.stop_children()
    [stopped] = asyncio.run(source.list_runs())
    assert stopped.phase is RunPhase.FAILED
    assert stopped.message


def test_the_forms_optional_choices_become_trains_options() -> None:
    dataset = DatasetRef(namespace="local", name="pets")
    plain = TrainingRequest(dataset=dataset, budget_milli_node_hours=5)
    assert train_options(plain) == []
    chosen = plain.model_copy(
        update={
            "backbones": ["mine=resnet18@s3://b/w.pth"],
            "nproc": 2,
            "export_formats": [EdgeFormat.TFLITE, EdgeFormat.EXECUTORCH],
            "base_model": "runs/local/pets/u0",
        }
    )
    assert train_options(chosen) == [
        "--backbone=mine=resnet18@s3://b/w.pth",
        "--nproc=2",
        "--export-formats=tflite,executorch",
        "--base-model=runs/local/pets/u0",
    ]
