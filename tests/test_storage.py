"""The storage layer on file:// and on real S3 (SeaweedFS)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from s3fs.errors import translate_boto_error

from autovision.settings import Settings
from autovision.storage import (
    TEMP_INFIX,
    Storage,
    StorageError,
    StorageUnavailableError,
    is_transient,
    retrying,
    split_uri,
    storage_unavailable,
)


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
