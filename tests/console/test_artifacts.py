"""Reading a version's index in pages, images by hash, and the live trials of a search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autovision.console.artifacts import ArtifactReader, VersionIndex
from autovision.console.source import ImageQuery, NotFoundError
from autovision.contract.files import DATASET_FORMAT, DatasetIndexHeader
from autovision.contract.keys import study_journal_key
from autovision.data.manifest import ImageRecord, encode_index
from autovision.storage import Storage, member_uri


def big_index(count: int) -> bytes:
    """An index of ``count`` images over 10 labels, as the importer encodes one (no shards behind it)."""
    records = [
        ImageRecord(
            uri=member_uri("file:///s/shard-00000.tar", 512 * i, 100),
            sha256=f"{i:064x}",
            labels=[f"label{i % 10}"],
            split="train" if i % 10 else "test",
            width=32,
            height=32,
            source=f"label{i % 10}/{i}.png",
        )
        for i in range(count)
    ]
    header = DatasetIndexHeader(format_version=DATASET_FORMAT, shards=[])
    return encode_index(records, [0] * count, header)


def test_a_page_of_one_label_is_a_slice_of_the_index_read_once(tmp_path: Path) -> None:
    storage = Storage(f"file://{tmp_path}")
    storage.write_bytes("datasets/big/sha256-1/index.parquet", big_index(12_000))
    reader = ArtifactReader(storage)
    page = reader.images("big", "sha256-1", ImageQuery(label="label3", offset=60, limit=60))
    assert page.total == 1200
    assert [tile.sha256 for tile in page.tiles] == [f"{i:064x}" for i in range(3 + 600, 3 + 1200, 10)]
    index = reader.index("big", "sha256-1")
    test_page = reader.images("big", "sha256-1", ImageQuery(label="label0", split="test", limit=5))
    assert test_page.total == 1200
    assert reader.index("big", "sha256-1") is index  # pages come from memory (docs/benchmarks.md: 60,000 images)


def test_rows_filter_by_label_and_split() -> None:
    index = VersionIndex.from_parquet(big_index(30))
    assert index.rows("label1", None).tolist() == [1, 11, 21]
    assert index.rows(None, "test").tolist() == [0, 10, 20]
    assert index.rows("nothing", None).tolist() == []
    assert isinstance(index.rows("label1", "test"), np.ndarray)


def test_an_unknown_version_or_image_is_not_found(tmp_path: Path) -> None:
    reader = ArtifactReader(Storage(f"file://{tmp_path}"))
    with pytest.raises(NotFoundError):
        reader.images("none", "sha256-1", ImageQuery())
    storage = Storage(f"file://{tmp_path}")
    storage.write_bytes("datasets/big/sha256-1/index.parquet", big_index(3))
    with pytest.raises(NotFoundError):
        ArtifactReader(storage).image_bytes("big", "sha256-1", "f" * 64)


def test_live_trials_come_from_the_study_journal_even_mid_write(tmp_path: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    journal = tmp_path / "journal.log"
    study = optuna.create_study(storage=optuna.storages.JournalStorage(JournalFileBackend(str(journal))))
    trial = study.ask()
    trial.set_user_attr("architecture", "resnet18")
    trial.set_user_attr("latencyMs", 3.5)
    trial.report(0.6, step=0)
    study.tell(trial, 0.6)
    storage = Storage(f"file://{tmp_path / 'storage'}")
    prefix = "runs/local/job/u1"
    storage.write_bytes(study_journal_key(prefix), journal.read_bytes() + b'{"op_code": 5, "half')
    [row] = ArtifactReader(storage).live_trials(prefix)
    assert (row["trial"], row["architecture"], row["latencyMs"], row["value"]) == (0, "resnet18", 3.5, 0.6)
    assert ArtifactReader(storage).live_trials("runs/local/job/none") == []
