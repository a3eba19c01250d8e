"""Reading a stored version: a round trip through shards on file:// and real S3, and one clear error for
each way a version can be broken (older format, missing, truncated or corrupt shard, mismatched index)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovision.contract.files import DatasetIndexHeader
from autovision.contract.keys import index_key, manifest_key, shard_key, shards_prefix
from autovision.data.importer import ImportResult, import_dataset
from autovision.data.manifest import DatasetFormatError, encode_index
from autovision.data.shards import ShardError, read_images
from autovision.data.versions import open_version, read_version
from autovision.storage import Storage, StorageError
from tests.support.datasets import labelled, write_zip

NAME = "pets"
# A few images per shard, so that a small dataset has several.
SHARD_BYTES = 4096


def _import(tmp_path: Path, entries: dict[str, bytes], storage: Storage) -> ImportResult:
    source = write_zip(tmp_path / f"{len(list(tmp_path.iterdir()))}.zip", entries)
    return import_dataset(str(source), NAME, storage, shard_bytes=SHARD_BYTES)


def test_a_version_reads_back_from_its_shards(tmp_path: Path, storage: Storage) -> None:
    entries = labelled(12)
    result = _import(tmp_path, entries, storage)
    assert len(storage.list_keys(shards_prefix(NAME, result.version))) > 2
    records = read_version(storage, NAME, result.version)
    assert records == result.records
    images = read_images(records, storage.settings)
    assert {record.source: data for record, data in zip(records, images, strict=True)} == entries


def test_an_opened_version_reads_a_split_in_slices_and_counts_from_columns(
    tmp_path: Path, file_storage: Storage
) -> None:
    result = _import(tmp_path, labelled(12), file_storage)
    index = open_version(file_storage, NAME, result.version)
    test = [record for record in result.records if record.split == "test"]
    assert test
    assert list(index.records("test")) == test
    assert [len(batch) for batch in index.batches()] == [len(result.records)], "fewer rows than a slice: one"
    assert (index.count(), index.count("test"), index.count("unassigned")) == (len(result.records), len(test), 0)
    assert index.stored_bytes() == sum(len(data) for data in labelled(12).values())


def test_an_opened_version_finds_a_few_records_by_uri(tmp_path: Path, file_storage: Storage) -> None:
    result = _import(tmp_path, labelled(12), file_storage)
    index = open_version(file_storage, NAME, result.version)
    test = next(record for record in result.records if record.split == "test")
    other = next(record for record in result.records if record.split != "test")

    assert index.records_of([test.uri, other.uri]) == {test.uri: test, other.uri: other}
    assert index.records_of([test.uri, other.uri], "test") == {test.uri: test}
    assert index.records_of([f"{test.uri}0"]) == {}


def test_the_same_images_in_another_order_give_the_same_shards(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(12)
    first = _import(tmp_path, entries, file_storage)
    shards = {key: file_storage.read_bytes(key) for key in file_storage.list_keys(shards_prefix(NAME, first.version))}
    other = Storage(f"file://{tmp_path / 'other'}")
    second = _import(tmp_path, dict(reversed(entries.items())), other)
    assert second.version == first.version
    assert {key: other.read_bytes(key) for key in other.list_keys(shards_prefix(NAME, second.version))} == shards


def test_a_version_of_the_older_format_is_refused(file_storage: Storage) -> None:
    file_storage.write_bytes(manifest_key(NAME, "sha256-old"), b'{"uri": "file:///x.png"}\n')
    with pytest.raises(DatasetFormatError, match=r"imported by an older AutoVision.*import the dataset again"):
        read_version(file_storage, NAME, "sha256-old")


def test_an_index_of_another_format_is_refused(file_storage: Storage) -> None:
    header = DatasetIndexHeader(format_version=3, shards=[])
    file_storage.write_bytes(index_key(NAME, "sha256-new"), encode_index([], [], header))
    with pytest.raises(DatasetFormatError, match="format 3, this AutoVision reads format 2"):
        read_version(file_storage, NAME, "sha256-new")


def test_an_incomplete_version_is_not_read(file_storage: Storage) -> None:
    file_storage.write_bytes(shard_key(NAME, "sha256-half", 0), b"x" * 1024)
    with pytest.raises(StorageError, match="has no complete version sha256-half"):
        read_version(file_storage, NAME, "sha256-half")


def test_a_missing_shard_is_named(tmp_path: Path, file_storage: Storage) -> None:
    result = _import(tmp_path, labelled(12), file_storage)
    file_storage.delete_prefix(shard_key(NAME, result.version, 1))
    with pytest.raises(ShardError, match=r"shard \S+/shard-00001.tar is missing"):
        read_version(file_storage, NAME, result.version)


def test_a_truncated_shard_is_named(tmp_path: Path, file_storage: Storage) -> None:
    result = _import(tmp_path, labelled(12), file_storage)
    key = shard_key(NAME, result.version, 2)
    file_storage.write_bytes(key, file_storage.read_bytes(key)[:-1500])
    with pytest.raises(ShardError, match=r"shard \S+/shard-00002.tar is \d+ bytes, the index says \d+"):
        read_version(file_storage, NAME, result.version)


def test_an_index_that_does_not_match_its_shards_is_named(tmp_path: Path, file_storage: Storage) -> None:
    result = _import(tmp_path, labelled(12), file_storage)
    first, second = shard_key(NAME, result.version, 0), shard_key(NAME, result.version, 1)
    swapped = file_storage.read_bytes(second)
    original = file_storage.read_bytes(first)
    # Another shard's bytes, cut or padded to this one's length: only the images' hashes tell.
    file_storage.write_bytes(first, (swapped + bytes(len(original)))[: len(original)])
    records = read_version(file_storage, NAME, result.version)
    with pytest.raises(ShardError, match=r"shard \S+/shard-00000.tar is corrupt or does not match the index"):
        read_images(records, file_storage.settings)
