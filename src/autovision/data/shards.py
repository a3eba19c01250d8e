"""Shards: a dataset version's images packed into tar files (the webdataset layout), and read back checked.

Each image is one tar member named ``<sha256>.<extension>``, so ``webdataset``
and plain ``tar`` read a shard as they are. Members are laid out by hand rather
than through ``tarfile`` so that where each image lies follows from the sizes
alone: ``plan_shards`` places every image before any is read, the importer
writes each shard as one object, and the index records each image's offset for
reading it back with one ranged read. A reader checks every image's bytes
against its hash, so a corrupt shard, or an index that does not match its
shards, fails naming the shard.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from autovision.data.manifest import ImageRecord
from autovision.settings import Settings
from autovision.storage import StorageError, read_uris, split_member_uri

BLOCK: Final = 512
# tar ends with two zero blocks.
END_OF_ARCHIVE: Final = bytes(2 * BLOCK)
# A shard's target size: large enough that a million images make a few hundred objects,
# small enough that the importer holds one in memory.
SHARD_BYTES: Final = 64 * 1024 * 1024


class ShardError(StorageError):
    """A shard is missing, truncated, corrupt or does not match the index: the version cannot be read."""


@dataclass(frozen=True)
class ShardPlan:
    """Where each image lies (its shard's number and its bytes' offset in that shard), and each shard's length."""

    shards: npt.NDArray[np.int32]
    offsets: npt.NDArray[np.int64]
    lengths: list[int]


def padded(size: int) -> int:
    """A member's data size rounded up to whole tar blocks."""
    return -(-size // BLOCK) * BLOCK


def plan_shards(sizes: Sequence[int] | npt.NDArray[np.int64], shard_bytes: int = SHARD_BYTES) -> ShardPlan:
    """Place images of these sizes, in this order, into shards of at most ``shard_bytes`` (one image per shard
    at least), as arrays: a million images take 12 MB."""
    shards = np.empty(len(sizes), dtype=np.int32)
    offsets = np.empty(len(sizes), dtype=np.int64)
    lengths: list[int] = []
    position = 0
    for index, size in enumerate(np.asarray(sizes, dtype=np.int64).tolist()):
        member = BLOCK + padded(size)
        if position and position + member + len(END_OF_ARCHIVE) > shard_bytes:
            lengths.append(position + len(END_OF_ARCHIVE))
            position = 0
        shards[index] = len(lengths)
        offsets[index] = position + BLOCK
        position += member
    if position:
        lengths.append(position + len(END_OF_ARCHIVE))
    return ShardPlan(shards, offsets, lengths)


def member_header(name: str, size: int) -> bytes:
    """A tar member's header block, with nothing that varies between imports (times, owners)."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    if len(header) != BLOCK:
        raise ValueError(f"tar member name {name!r} needs more than one header block")
    return header


def pack_chunks(members: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """One shard's bytes in pieces, one member at a time: each (name, data) as a tar member, then the end."""
    for name, data in members:
        yield member_header(name, len(data))
        yield data
        yield bytes(padded(len(data)) - len(data))
    yield END_OF_ARCHIVE


def pack(members: Iterable[tuple[str, bytes]]) -> bytes:
    """One shard's bytes, whole (for small shards and tests)."""
    return b"".join(pack_chunks(members))


def member_name(sha256: str, extension: str) -> str:
    """An image's member name in its shard (the webdataset key and extension)."""
    return f"{sha256}.{extension}"


def read_images(records: Sequence[ImageRecord], settings: Settings | None = None) -> list[bytes]:
    """The records' image bytes, read from their shards and checked against their hashes.

    Raises ``ShardError`` naming the shard when a member's bytes are short or are
    not the image the index says.
    """
    contents = read_uris([record.uri for record in records], settings)
    for record, data in zip(records, contents, strict=True):
        if hashlib.sha256(data).hexdigest() != record.sha256:
            shard = split_member_uri(record.uri)[0]
            raise ShardError(
                f"shard {shard} is corrupt or does not match the index: image {record.sha256[:12]} "
                f"(from {record.source or 'unknown'}) reads differently; import the dataset again"
            )
    return contents
