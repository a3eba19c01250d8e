"""Open a stored dataset version for reading: its index, checked against its shards before any image is read.

A version is complete once its index exists (the importer writes it last). Every
shard the index names must exist with the length the index says, so a missing or
truncated shard fails here, naming it, rather than in the middle of a trial; a
shard whose bytes differ fails when its images are read (``shards.read_images``).
A version of the format before shards (one object per image) is refused with a
message saying to import it again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from autovision.contract.keys import index_key, manifest_key, shard_key
from autovision.data.manifest import (
    DatasetFormatError,
    ImageRecord,
    SplitName,
    index_batches,
    index_columns,
    index_header,
)
from autovision.data.record_table import RecordTable
from autovision.data.shards import ShardError
from autovision.storage import Storage, StorageError, object_sizes, split_member_uri


@dataclass(frozen=True)
class VersionIndex:
    """A complete version's index, kept as its compact Parquet bytes and read a row group at a time, so a
    reader of a large version never holds a record per image."""

    name: str
    version: str
    data: bytes
    shard_uri: Callable[[int], str]

    def batches(self, split: SplitName | None = None) -> Iterator[list[ImageRecord]]:
        """The records (only ``split``'s when given), a slice of the index at a time (``RECORD_SLICE`` rows)."""
        return index_batches(self.data, self.shard_uri, split)

    def records(self, split: SplitName | None = None) -> Iterator[ImageRecord]:
        """The records (only ``split``'s when given), one at a time."""
        return (record for batch in self.batches(split) for record in batch)

    def records_of(self, uris: Collection[str], split: SplitName | None = None) -> dict[str, ImageRecord]:
        """The records with these URIs (only ``split``'s when given), by URI, from one pass over the index that
        builds records only for the rows at their offsets."""
        offsets = {offset for _, offset, _ in map(split_member_uri, uris) if offset is not None}
        wanted = set(uris)
        return {
            record.uri: record
            for batch in index_batches(self.data, self.shard_uri, split, offsets)
            for record in batch
            if record.uri in wanted
        }

    def count(self, split: SplitName | None = None) -> int:
        """Images in the version (in ``split`` when given), from the split column alone."""
        return sum(
            len(batch) if split is None else pc.sum(pc.equal(batch.column(0).cast(pa.string()), split)).as_py() or 0
            for batch in index_columns(self.data, ["split"])
        )

    def stored_bytes(self) -> int:
        """The images' stored bytes in all, from the size column alone."""
        return sum(pc.sum(batch.column(0)).as_py() or 0 for batch in index_columns(self.data, ["size"]))


def open_version(storage: Storage, name: str, version: str) -> VersionIndex:
    """A complete version's index, after checking that each of its shards is there, whole."""
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
    return VersionIndex(name, version, data, lambda number: storage.uri(shard_key(name, version, number)))


def read_version(storage: Storage, name: str, version: str) -> RecordTable:
    """The records of a complete version as the index's columns (for readers that need them all, as the trainer
    does; others read slices with ``open_version``)."""
    index = open_version(storage, name, version)
    return RecordTable.read(index.data, index.shard_uri)
