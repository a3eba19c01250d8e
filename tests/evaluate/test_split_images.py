"""Reading a split a batch at a time: one decoding pool for a whole pass, and images by URI checked like any read."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autovision.contract.keys import shard_key
from autovision.data.importer import import_dataset
from autovision.data.shards import ShardError
from autovision.data.versions import open_version
from autovision.evaluate.split_images import BYTES_PER_PIXEL, SplitImages
from autovision.storage import Storage, split_member_uri
from autovision.train import images as train_images
from autovision.train.images import decode_pixels
from tests.support.datasets import LABELS, labelled, write_zip


def test_a_pass_over_many_batches_forks_one_decoding_pool(
    tmp_path: Path, file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = labelled(200)
    result = import_dataset(str(write_zip(tmp_path / "pets.zip", entries)), "pets", file_storage)
    index = open_version(file_storage, "pets", result.version)
    pools: list[int] = []

    class CountedPool(ProcessPoolExecutor):
        def __init__(self, workers: int, **kwargs: Any) -> None:
            pools.append(workers)
            super().__init__(workers, **kwargs)

    monkeypatch.setattr(train_images, "ProcessPoolExecutor", CountedPool)
    # Batches of 70 images, each more than one decoding task, so that each would have had a pool of its own.
    budget = 70 * BYTES_PER_PIXEL * 16 * 16
    split = SplitImages(index, "train", list(LABELS), 16, file_storage, budget_bytes=budget, workers=2)

    batches = list(split.batches())

    assert [len(batch) for batch in batches][:2] == [70, 70]
    assert len(batches) >= 3
    assert pools == [2]
    records = list(index.records("train"))
    assert [uri for batch in batches for uri in batch.uris] == [record.uri for record in records]
    expected = np.stack([decode_pixels(entries[record.source], 16) for record in records])
    np.testing.assert_array_equal(np.concatenate([batch.pixels.numpy() for batch in batches]), expected)


def test_images_read_by_uri_are_checked_and_a_corrupt_shard_is_named(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10)
    result = import_dataset(str(write_zip(tmp_path / "pets.zip", entries)), "pets", file_storage, shard_bytes=4096)
    index = open_version(file_storage, "pets", result.version)
    key = shard_key("pets", result.version, 1)
    record = next(r for r in index.records() if r.uri.startswith(f"{file_storage.uri(key)}#"))
    images = SplitImages(index, record.split, list(LABELS), 16, file_storage, workers=1)
    np.testing.assert_array_equal(images.pixels_of([record.uri])[0].numpy(), decode_pixels(entries[record.source], 16))
    with pytest.raises(ValueError, match="not images of the"):
        images.pixels_of([record.uri, "file:///elsewhere.png"])

    _, offset, _ = split_member_uri(record.uri)
    assert offset is not None
    corrupt = bytearray(file_storage.read_bytes(key))
    corrupt[offset] ^= 0xFF
    file_storage.write_bytes(key, bytes(corrupt))
    with pytest.raises(ShardError, match=r"shard \S+/shard-00001.tar is corrupt"):
        images.pixels_of([record.uri])
