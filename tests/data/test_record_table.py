"""A version's records as columns: the index's records in its order, split, labelled and pickled without a Python
object per image."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest

from autovision.contract.files import DATASET_FORMAT, DatasetIndexHeader, ShardFacts
from autovision.contract.keys import index_key, shard_key
from autovision.data.importer import import_dataset
from autovision.data.manifest import SPLITS, ImageRecord, SplitName, index_batches, write_index
from autovision.data.record_table import RecordTable
from autovision.data.versions import read_version
from autovision.storage import Storage
from tests.support.datasets import labelled, write_zip
from tests.support.records import record_table

NAME = "pets"


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, str]:
    """A small version in several shards, with every split."""
    folder = tmp_path_factory.mktemp("record_table")
    storage = Storage(f"file://{folder / 'storage'}")
    result = import_dataset(str(write_zip(folder / "pets.zip", labelled(12))), NAME, storage, shard_bytes=4096)
    return storage, result.version


def _index_records(storage: Storage, version: str, split: SplitName | None = None) -> list[ImageRecord]:
    """The records as ``index_batches`` builds them (what evaluation reads), to compare with the table's."""
    data = storage.read_bytes(index_key(NAME, version))
    batches = index_batches(data, lambda number: storage.uri(shard_key(NAME, version, number)), split)
    return [record for batch in batches for record in batch]


def test_a_table_holds_the_index_s_records_in_order_and_per_split(version: tuple[Storage, str]) -> None:
    storage, name = version
    table = read_version(storage, NAME, name)
    expected = _index_records(storage, name)
    assert len(table) == len(expected) > 12
    assert list(table) == expected
    assert [table[0], table[-1]] == [expected[0], expected[-1]]
    assert list(table[3:9]) == expected[3:9]
    assert list(table[::5]) == expected[::5]
    assert list(table.take([7, 2, 7])) == [expected[7], expected[2], expected[7]]
    for split in SPLITS:
        assert list(table.where_split(split)) == _index_records(storage, name, split), split
    both = [r for r in expected if r.split == "train"] + [r for r in expected if r.split == "validation"]
    assert list(table.where_split("train", "validation")) == both, "each split in turn, not interleaved"
    with pytest.raises(IndexError):
        table[len(table)]


def test_a_table_pickles_as_the_same_records(version: tuple[Storage, str]) -> None:
    storage, name = version
    table = read_version(storage, NAME, name)
    again = pickle.loads(pickle.dumps(table))
    assert isinstance(again, RecordTable)
    assert again == table
    assert again.where_split("test") == table.where_split("test")


def test_the_label_set_counts_trained_splits_and_the_task_any_image_s_labels() -> None:
    def record(labels: list[str], split: SplitName) -> ImageRecord:
        return ImageRecord(uri="", sha256="0", labels=labels, split=split, width=1, height=1)

    single = [record(["dog"], "train"), record(["cat"], "test"), record(["bird"], "unassigned"), record([], "train")]
    assert record_table(single).label_set() == ["cat", "dog"], "sorted; a label on held-out images only is none"
    assert not record_table(single).multi_label()
    multi = record_table([*single, record(["owl", "ant"], "unassigned")])
    assert multi.multi_label(), "any image, held out or not"
    assert multi.label_set() == ["cat", "dog"]
    assert record_table([]).label_set() == []
    assert not record_table([]).multi_label()


def test_a_table_holds_no_python_object_per_image(tmp_path: Path) -> None:
    rows = 20_000
    columns = {
        "sha256": [f"{row:064x}" for row in range(rows)],
        "labels": [[f"label{row % 7}"] for row in range(rows)],
        "split": pa.array([SPLITS[row % 3] for row in range(rows)]).dictionary_encode(),
        "width": [32] * rows,
        "height": [24] * rows,
        "source": [f"images/label{row % 7}/{row}.png" for row in range(rows)],
        "shard": [row // 1000 for row in range(rows)],
        "offset": [512 * (row % 1000) for row in range(rows)],
        "size": [100] * rows,
    }
    shards = [ShardFacts(number=n, size=512_000, images=1000) for n in range(rows // 1000)]
    header = DatasetIndexHeader(format_version=DATASET_FORMAT, shards=shards)
    write_index(tmp_path / "index.parquet", pa.table(columns), header)
    data = (tmp_path / "index.parquet").read_bytes()
    del columns

    tracemalloc.start()
    try:
        table = RecordTable.read(data, lambda number: f"file:///v/shards/shard-{number:05d}.tar")
        per_split = [table.where_split(split) for split in SPLITS]
        held = tracemalloc.get_traced_memory()[0]
        records = list(table[:2000])
        per_record = (tracemalloc.get_traced_memory()[0] - held) / len(records)
    finally:
        tracemalloc.stop()
    assert sum(map(len, per_split)) == len(table) == rows
    assert held / rows < 16, f"{held / rows:.0f} bytes of Python objects per row"
    assert per_record > 1000, "a record as an object is over 1 KB: what the table saves"
