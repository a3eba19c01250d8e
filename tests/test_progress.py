"""ProgressFile: a running job's progress kept in storage for the operator, without ever failing the job."""

from __future__ import annotations

from typing import Any

import pytest

from autovision.progress import ProgressFile
from autovision.storage import Storage

KEY = "datasets/ns/flowers/import-progress.json"


class Recorder:
    """A reporter that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def stage(self, title: str, total: float | None = None) -> None:
        self.calls.append(("stage", title, total))

    def update(self, completed: float, detail: str = "") -> None:
        self.calls.append(("update", completed, detail))

    def note(self, message: str) -> None:
        self.calls.append(("note", message))


def test_stages_are_written_at_once_updates_at_most_every_interval(file_storage: Storage) -> None:
    inner = Recorder()
    progress = ProgressFile(file_storage, KEY, inner, interval=3600)
    progress.stage("Decoding images", total=100)
    assert file_storage.read_json(KEY) | {"updatedAt": None} == {
        "stage": "Decoding images", "completed": 0.0, "total": 100, "detail": "", "updatedAt": None,
    }  # fmt: skip
    progress.update(40, "40 images")
    assert file_storage.read_json(KEY)["completed"] == 0.0, "within the interval: not written"
    progress.interval = 0
    progress.update(60, "60 images")
    assert file_storage.read_json(KEY)["completed"] == 60
    progress.note("hello")
    assert inner.calls == [
        ("stage", "Decoding images", 100), ("update", 40, "40 images"), ("update", 60, "60 images"), ("note", "hello"),
    ]  # fmt: skip
    progress.remove()
    assert not file_storage.exists(KEY)
    progress.remove()  # nothing there any more: still fine


def test_a_storage_failure_is_logged_not_raised(
    file_storage: Storage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(key: str, value: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(file_storage, "write_json", broken)
    inner = Recorder()
    ProgressFile(file_storage, KEY, inner).stage("Decoding images", total=1)
    assert inner.calls == [("stage", "Decoding images", 1)]
    assert "cannot write progress" in caplog.text
    assert "disk full" in caplog.text
