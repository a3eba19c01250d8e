"""Shards: planned from sizes alone, packed as tar files any tar reader reads, read back checked."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autovision.data.manifest import ImageRecord
from autovision.data.shards import BLOCK, ShardError, member_name, pack, plan_shards, read_images
from autovision.storage import Storage, member_uri, split_member_uri


@given(sizes=st.lists(st.integers(0, 3000), max_size=30), shard_bytes=st.integers(1, 8000))
def test_the_plan_is_where_tar_puts_each_member(sizes: list[int], shard_bytes: int) -> None:
    plan = plan_shards(sizes, shard_bytes)
    for number, length in enumerate(plan.lengths):
        members = [
            (f"{i:064x}.png", bytes([i % 256]) * size) for i, size in enumerate(sizes) if plan.shards[i] == number
        ]
        assert members, "no shard is empty"
        packed = pack(members)
        assert len(packed) == length
        assert length <= shard_bytes or len(members) == 1, "only an image too large for a shard has one to itself"
        with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
            for info in tar.getmembers():
                index = int(info.name.split(".")[0], 16)
                assert info.offset_data == plan.offsets[index]
                assert packed[info.offset_data : info.offset_data + info.size] == bytes([index % 256]) * sizes[index]


def test_the_plan_fills_shards_in_order() -> None:
    plan = plan_shards([100, 100, 100], shard_bytes=4 * BLOCK)
    assert list(zip(plan.shards.tolist(), plan.offsets.tolist(), strict=True)) == [(0, BLOCK), (1, BLOCK), (2, BLOCK)]
    plan = plan_shards([100, 100, 100], shard_bytes=6 * BLOCK)
    assert list(zip(plan.shards.tolist(), plan.offsets.tolist(), strict=True)) == [
        (0, BLOCK),
        (0, 3 * BLOCK),
        (1, BLOCK),
    ]
    assert plan.lengths == [6 * BLOCK, 4 * BLOCK]


def _stored_shard(tmp_path: Path, images: list[bytes]) -> tuple[Storage, list[ImageRecord], str]:
    storage = Storage(f"file://{tmp_path}")
    members = [(member_name(hashlib.sha256(data).hexdigest(), "png"), data) for data in images]
    offsets = plan_shards([len(data) for data in images]).offsets.tolist()
    storage.write_bytes("shard.tar", pack(members))
    uri = storage.uri("shard.tar")
    records = [
        ImageRecord(
            uri=member_uri(uri, offset, len(data)),
            sha256=hashlib.sha256(data).hexdigest(),
            labels=["a"],
            split="train",
            width=1,
            height=1,
        )
        for data, offset in zip(images, offsets, strict=True)
    ]
    return storage, records, uri


def test_images_read_back_checked(tmp_path: Path) -> None:
    images = [b"first image", b"second", b"third" * 300]
    storage, records, uri = _stored_shard(tmp_path, images)
    assert read_images(records) == images

    packed = bytearray(storage.read_bytes("shard.tar"))
    _, offset, _ = split_member_uri(records[1].uri)
    assert offset is not None
    packed[offset] ^= 0xFF  # a byte of the second image: same length, other content
    storage.write_bytes("shard.tar", bytes(packed))
    with pytest.raises(ShardError, match=f"shard {uri} is corrupt or does not match the index") as error:
        read_images(records)
    assert "\n" not in str(error.value)
