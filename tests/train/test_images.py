"""Decoding a version's images for training: read from the shards, and a corrupt shard named, never skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from autovision.contract.keys import shard_key
from autovision.data.importer import import_dataset
from autovision.data.shards import ShardError
from autovision.data.versions import read_version
from autovision.storage import Storage, split_member_uri
from autovision.train.images import decode_pixels, load_images
from tests.support.datasets import labelled, write_zip


def test_a_version_decodes_from_its_shards_and_a_corrupt_shard_fails_naming_it(
    tmp_path: Path, file_storage: Storage
) -> None:
    entries = labelled(10)
    result = import_dataset(str(write_zip(tmp_path / "pets.zip", entries)), "pets", file_storage, shard_bytes=4096)
    records = read_version(file_storage, "pets", result.version)
    images = load_images(records, records.label_set(), 16, file_storage, workers=1)
    expected = [decode_pixels(entries[record.source], 16) for record in records]
    assert [row.tolist() for row in images.pixels.numpy()] == [pixels.tolist() for pixels in expected]

    key = shard_key("pets", result.version, 1)
    _, offset, _ = split_member_uri(next(r.uri for r in records if r.uri.startswith(f"{file_storage.uri(key)}#")))
    assert offset is not None
    corrupt = bytearray(file_storage.read_bytes(key))
    corrupt[offset] ^= 0xFF  # the first byte of an image in shard 1
    file_storage.write_bytes(key, bytes(corrupt))
    with pytest.raises(ShardError, match=r"shard \S+/shard-00001.tar is corrupt"):
        load_images(records, records.label_set(), 16, file_storage, workers=1)
