"""The storage layer on file:// and on real S3 (SeaweedFS)."""

from __future__ import annotations

import pytest

from autovision.storage import TEMP_INFIX, Storage, StorageError, split_uri


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
