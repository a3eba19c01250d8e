"""Open a stored dataset version for reading: its index, checked against its shards before any image is read.

A version is complete once its index exists (the importer writes it last). Every
shard the index names must exist with the length the index says, so a missing or
truncated shard fails here, naming it, rather than in the middle of a trial; a
shard whose bytes differ fails when its images are read (``shards.read_images``).
A version of the format before shards (one object per image) is refused with a
message saying to import it again.
"""

from __future__ import annotations

from autovision.contract.keys import index_key, manifest_key, shard_key
from autovision.data.manifest import DatasetFormatError, ImageRecord, decode_index, index_header
from autovision.data.shards import ShardError
from autovision.storage import Storage, StorageError, object_sizes


def read_version(storage: Storage, name: str, version: str) -> list[ImageRecord]:
    """The records of a complete version, after checking that each of its shards is there, whole."""
    key = index_key(name, version)
    if not storage.exists(key):
        if storage.exists(manifest_key(name, version)):
            raise DatasetFormatError(
                f"dataset {name!r} version {version} was imported by an older AutoVision (one object per "
                "image); this one reads sharded versions only: import the dataset again"
            )
        raise StorageError(f"dataset {name!r} has no complete version {version} in {storage.uri(key)}")
    data = storage.read_bytes(key)
    header = index_header(data)
    uris = [storage.uri(shard_key(name, version, shard.number)) for shard in header.shards]
    for uri, shard, size in zip(uris, header.shards, object_sizes(uris, storage.settings), strict=True):
        if size is None:
            raise ShardError(f"shard {uri} is missing: import the dataset again")
        if size != shard.size:
            raise ShardError(
                f"shard {uri} is {size} bytes, the index says {shard.size}: it is truncated or not this "
                "version's; import the dataset again"
            )
    return decode_index(data, lambda number: storage.uri(shard_key(name, version, number)))
