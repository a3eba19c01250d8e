"""The storage layer on file:// and on real S3 (SeaweedFS)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from s3fs.errors import translate_boto_error

from autovision.contract.keys import progress_key
from autovision.data.importer import import_dataset
from autovision.embedded_s3 import EmbeddedS3
from autovision.progress import LogReporter
from autovision.search.job import ImageCache, SearchJob, SearchSettings
from autovision.search.nodes import run_node
from autovision.search.study import StudyStore
from autovision.settings import Settings
from autovision.storage import (
    TEMP_INFIX,
    Storage,
    StorageError,
    StorageUnavailableError,
    is_transient,
    member_uri,
    object_sizes,
    open_uri,
    read_uris,
    retrying,
    split_member_uri,
    split_uri,
    storage_unavailable,
)
from autovision.train.trainer import TrialCheckpoint
from tests.support.search import digits_subset_zip, search_job, tiny_space


def test_round_trip_and_listing(storage: Storage) -> None:
    storage.write_bytes("a/b/c.bin", b"\x00\x01")
    storage.write_json("a/d.json", {"x": 1})
    assert storage.read_bytes("a/b/c.bin") == b"\x00\x01"
    assert storage.read_json("a/d.json") == {"x": 1}
    assert storage.list_keys("a") == ["a/b/c.bin", "a/d.json"]
    assert storage.exists("a/d.json")
    assert not storage.exists("a/missing")


def test_overwrite_is_whole(storage: Storage) -> None:
    storage.write_bytes("k", b"first version")
    storage.write_bytes("k", b"2")
    assert storage.read_bytes("k") == b"2"
    assert storage.list_keys("") == ["k"]


def test_temporaries_are_never_listed(file_storage: Storage) -> None:
    storage = file_storage
    """A crash between the temporary write and the move leaves only an ignored temp key."""
    storage.fs.pipe_file(storage.path(f"x/model.onnx{TEMP_INFIX}dead"), b"half")
    assert storage.list_keys("x") == []
    assert not storage.exists("x/model.onnx")


def test_failed_write_leaves_no_final_object(file_storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing the temporary file and renaming it leaves nothing final."""
    storage = file_storage

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(storage.fs, "mv", crash)
    with pytest.raises(OSError, match="disk gone"):
        storage.write_bytes("y/model.json", b"{}")
    assert not storage.exists("y/model.json")
    assert storage.list_keys("y") == []


def test_missing_object_is_a_clear_error(storage: Storage) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes("nope")


def test_object_sizes_are_known_before_reading_and_none_for_missing(storage: Storage) -> None:
    storage.write_bytes("a.bin", b"x" * 10)
    storage.write_bytes("b.bin", b"")

    uris = [storage.uri("a.bin"), storage.uri("missing.bin"), storage.uri("b.bin")]

    assert object_sizes(uris, storage.settings) == [10, None, 0]
    assert object_sizes([], storage.settings) == []


def test_a_streamed_write_appears_whole_or_not_at_all(storage: Storage) -> None:
    def broken() -> Iterator[bytes]:
        yield b"half"
        raise OSError("source gone")

    with pytest.raises(OSError, match="source gone"):
        storage.write_stream("big.bin", broken)
    assert storage.list_keys("") == []
    storage.write_stream("big.bin", lambda: iter([b"a" * 10, b"b" * 5]))
    assert storage.read_bytes("big.bin") == b"a" * 10 + b"b" * 5


def test_member_uris_read_byte_ranges_and_name_a_short_object(storage: Storage) -> None:
    storage.write_bytes("shard.tar", b"0123456789")
    whole, inner = storage.uri("shard.tar"), member_uri(storage.uri("shard.tar"), 2, 5)
    assert split_member_uri(inner) == (whole, 2, 5)
    assert read_uris([inner, whole, member_uri(whole, 0, 1)], storage.settings) == [b"23456", b"0123456789", b"0"]
    with open_uri(inner, storage.settings) as handle:
        assert handle.read() == b"23456"
    with pytest.raises(StorageError, match=r"shard.tar ends before byte 12: it is truncated"):
        read_uris([member_uri(whole, 8, 4)], storage.settings)


def test_delete_and_upload_download(storage: Storage, tmp_path) -> None:
    source = tmp_path / "tree"
    (source / "m" / "1").mkdir(parents=True)
    (source / "m" / "config.pbtxt").write_text("name: 'm'")
    (source / "m" / "1" / "model.py").write_text("pass")
    assert storage.upload_dir(source, "repo") == ["repo/m/1/model.py", "repo/m/config.pbtxt"]
    storage.download_prefix("repo", tmp_path / "copy")
    assert (tmp_path / "copy" / "m" / "1" / "model.py").read_text() == "pass"
    storage.delete_prefix("repo")
    assert storage.list_keys("repo") == []


@pytest.mark.parametrize("uri", ["ftp://x/y", "s3://", "gs://bucket/x"])
def test_unsupported_uris_are_refused(uri: str) -> None:
    with pytest.raises(StorageError):
        split_uri(uri)


def client_error(status: int, code: str) -> botocore.exceptions.ClientError:
    """An S3 error response as botocore raises it."""
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "GetObject")


def as_s3fs_raises(error: botocore.exceptions.ClientError) -> BaseException:
    """The OSError s3fs raises for an S3 error response, with botocore's error as its cause."""
    translated: BaseException = translate_boto_error(error)
    return translated


TRANSIENT = {
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "reset": ConnectionResetError(104, "Connection reset by peer"),
    "timeout": TimeoutError("timed out"),
    "endpoint": botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3:8333"),
    "connect timeout": botocore.exceptions.ConnectTimeoutError(endpoint_url="http://s3:8333"),
    "read timeout": botocore.exceptions.ReadTimeoutError(endpoint_url="http://s3:8333"),
    "closed": botocore.exceptions.ConnectionClosedError(endpoint_url="http://s3:8333"),
    "500": as_s3fs_raises(client_error(500, "InternalError")),
    "502": client_error(502, "BadGateway"),
    "503 slow down": as_s3fs_raises(client_error(503, "SlowDown")),
    "throttled 400": client_error(400, "ThrottlingException"),
    "429": client_error(429, "TooManyRequests"),
}
NOT_TRANSIENT = {
    "missing object": as_s3fs_raises(client_error(404, "NoSuchKey")),
    "missing bucket": as_s3fs_raises(client_error(404, "NoSuchBucket")),
    "access denied": as_s3fs_raises(client_error(403, "AccessDenied")),
    "bad request": client_error(400, "InvalidArgument"),
    "missing file": FileNotFoundError("gone"),
    "bad uri": StorageError("unsupported storage URI"),
    "already retried": StorageUnavailableError("storage unavailable for 180 s"),
    "a bug": ValueError("not storage at all"),
}


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_outages_throttling_and_5xx_are_transient(error: BaseException) -> None:
    assert is_transient(error)
    assert storage_unavailable(error)


@pytest.mark.parametrize("error", NOT_TRANSIENT.values(), ids=NOT_TRANSIENT.keys())
def test_missing_forbidden_or_malformed_is_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_an_outage_behind_a_wrapping_error_is_still_an_outage() -> None:
    """What the trainer asks of, e.g., a BackboneWeightsError raised from the storage error."""
    wrapped = ValueError("cannot read the weights")
    wrapped.__cause__ = StorageUnavailableError("storage unavailable for 180 s")  # raise ... from
    assert storage_unavailable(wrapped)
    assert not storage_unavailable(ValueError("cannot read the weights"))
    assert not storage_unavailable(StorageError("s3://b/w.pt does not exist"))


def failing(times: int, error: Exception) -> Callable[[], str]:
    """An operation that raises ``error`` on its first ``times`` calls and then answers; counts its calls."""
    calls: list[None] = []

    def operation() -> str:
        calls.append(None)
        if len(calls) <= times:
            raise error
        return f"answered on call {len(calls)}"

    return operation


def test_a_transient_failure_is_retried_until_it_passes() -> None:
    assert retrying(failing(2, ConnectionRefusedError()), "read", Settings(storage_retry_seconds=30)) == (
        "answered on call 3"
    )


def test_a_lasting_outage_gives_up_after_the_retry_time() -> None:
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="cannot read: storage unavailable for 1 s") as raised:
        retrying(failing(1000, ConnectionRefusedError()), "read", Settings(storage_retry_seconds=1))
    assert 1 <= time.monotonic() - started < 2
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


def test_bad_input_is_never_retried() -> None:
    operation = failing(1, FileNotFoundError("gone"))
    with pytest.raises(FileNotFoundError):
        retrying(operation, "read", Settings(storage_retry_seconds=30))
    assert operation() == "answered on call 2", "called once by retrying, once here"


# --- a search rides out an outage of real S3 ------------------------------------------------

OUTAGE_S = 6.0
TRIALS = 3


class OutageAfterFirstTrial(LogReporter):
    """Stops S3 once progress.json counts a finished trial, and starts it again ``OUTAGE_S`` later.

    The stop happens inside the search's own progress update, so the search's
    next storage operation meets the outage for certain.
    """

    def __init__(self, s3: EmbeddedS3, progress: Storage, key: str) -> None:
        self.s3 = s3
        self.progress = progress
        self.key = key
        self.restart: threading.Timer | None = None

    def update(self, completed: float, detail: str = "") -> None:
        if self.restart is not None or not self.progress.exists(self.key):
            return
        trials = self.progress.read_json(self.key)["trials"]
        if trials["done"] + trials["pruned"] >= 1:
            self.s3.stop()
            self.restart = threading.Timer(OUTAGE_S, self.s3.start)
            self.restart.start()


def study_trials(job: SearchJob) -> list[FrozenTrial]:
    store = StudyStore(job.storage(), job.prefix, job.settings.work_dir)
    store.restore()
    return optuna.load_study(study_name="search", storage=store.optuna_storage()).get_trials()


@pytest.mark.e2e
@pytest.mark.training
def test_a_search_rides_out_an_s3_outage_without_redoing_a_trial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EmbeddedS3(tmp_path / "seaweedfs") as s3:
        storage = Storage.from_settings(s3.settings("outage"))
        dataset = import_dataset(str(digits_subset_zip(tmp_path / "digits.zip", per_class=12)), "digits", storage)
        settings = SearchSettings(early_stopping=False, max_trials=TRIALS, work_dir=tmp_path / "work")
        job = search_job(storage, dataset.records, "runs/outage/u", space=tiny_space(), settings=settings)
        reporter = OutageAfterFirstTrial(s3, storage, progress_key(job.prefix))

        with caplog.at_level(logging.WARNING, logger="autovision.storage"):
            run_node(job, ImageCache(job.records, job.labels, job.storage()), reporter)

        assert reporter.restart is not None, "the outage never happened"
        reporter.restart.join()
        retries = [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]
        assert retries, f"no storage call met the outage: {[record.getMessage() for record in caplog.records]}"
        trials = study_trials(job)
        assert [trial.number for trial in trials] == list(range(TRIALS)), "a trial was added (redone) or lost"
        assert all(trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for trial in trials)
        assert not any("resumedFrom" in trial.user_attrs for trial in trials)
        for trial in trials:
            state = TrialCheckpoint(storage, trial.user_attrs["checkpoint"]).load()
            assert state is not None
            assert list(state["starts"]) == [0], f"trial {trial.number} was trained more than once"
