"""Sliced imports: the same version however the source is ordered or cut, resumable pods, no half version."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autovision.contract.keys import import_slices_prefix, index_key, latest_key
from autovision.data.importer import DatasetImportError, import_dataset
from autovision.data.shards import read_images
from autovision.data.slices import SlicedImport, import_as_pod, import_in_processes
from autovision.data.sources.base import slice_of
from autovision.data.versions import read_version
from autovision.storage import Storage, StorageError
from tests.support.datasets import assert_only_dataset_keys, image_bytes, labelled, write_zip
from tests.support.slow_storage import child_environment


def _entries() -> dict[str, bytes]:
    """24 images, two copies under other names (likely in another slice), one copy under another label."""
    entries = labelled(12)
    entries |= {"cat/copy_a.png": entries["cat/0.png"], "dog/copy_b.png": entries["dog/1.png"]}
    entries |= {"dog/conflict.png": entries["cat/2.png"], "dog/broken.png": b"not an image"}
    return entries


def test_the_same_version_whatever_the_order_or_the_slices(tmp_path: Path, file_storage: Storage) -> None:
    entries = _entries()
    assert len({slice_of(name, 3) for name in entries}) == 3
    whole = import_dataset(str(write_zip(tmp_path / "whole.zip", entries)), "pets", file_storage, shard_bytes=4096)
    reversed_zip = str(write_zip(tmp_path / "reversed.zip", dict(reversed(entries.items()))))
    other = Storage(f"file://{tmp_path / 'sliced'}")
    sliced = import_in_processes(SlicedImport(reversed_zip, "pets", slices=3, shard_bytes=4096), other)
    assert sliced.version == whole.version
    for key in ("kept", "duplicates", "conflicts", "rejected", "total", "perLabel", "duplicateFiles"):
        assert sliced.report[key] == whole.report[key], key
    records = read_version(other, "pets", sliced.version)
    assert [(r.sha256, r.labels, r.split, r.source) for r in records] == [
        (r.sha256, r.labels, r.split, r.source) for r in whole.records
    ]
    read_images(records, other.settings)  # every image where the index says, checked against its hash
    assert_only_dataset_keys(other, "pets")


def test_pods_resume_and_pod_0_merges_last(tmp_path: Path, storage: Storage) -> None:
    job = SlicedImport(str(write_zip(tmp_path / "pets.zip", _entries())), "pets", slices=2, shard_bytes=4096)
    assert import_as_pod(job, 1, storage) is None
    staged = storage.list_keys(import_slices_prefix("pets", job.run))
    assert import_as_pod(job, 1, storage) is None, "a restarted pod finds its slice done"
    assert storage.list_keys(import_slices_prefix("pets", job.run)) == staged
    assert not storage.exists(latest_key("pets")), "nothing is a version before the merge"
    result = import_as_pod(job, 0, storage)
    assert result is not None
    assert storage.exists(index_key("pets", result.version))
    assert storage.list_keys(import_slices_prefix("pets", job.run)) == []
    assert read_images(read_version(storage, "pets", result.version), storage.settings)


def test_a_refused_sliced_import_writes_nothing(tmp_path: Path, file_storage: Storage) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(10) | {"../escape.png": image_bytes(1)})
    with pytest.raises(DatasetImportError, match="unsafe path in archive"):
        import_in_processes(SlicedImport(str(source), "pets", slices=2), file_storage)
    assert file_storage.list_keys("") == []


# A sliced import in processes (each write slowed down so that it is still writing when killed), from pickled
# (zip, name, root, settings).
_KILLABLE_IMPORT = """
import pickle, sys
from autovision.data.slices import SlicedImport, import_in_processes
from tests.support.slow_storage import SlowStorage

with open(sys.argv[1], "rb") as arguments:
    source, name, root, settings = pickle.load(arguments)
import_in_processes(SlicedImport(source, name, slices=2, shard_bytes=1), SlowStorage(root, settings))
"""


def test_a_sliced_import_killed_mid_way_leaves_no_complete_version(tmp_path: Path, storage: Storage) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(30))
    arguments = tmp_path / "arguments.pickle"
    arguments.write_bytes(pickle.dumps((str(source), "pets", storage.uri(""), storage.settings)))
    command = [sys.executable, "-c", _KILLABLE_IMPORT, str(arguments)]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_environment(), start_new_session=True
    )
    deadline = time.monotonic() + 120
    copied: list[str] = []
    while not copied and child.poll() is None and time.monotonic() < deadline:
        copied = [key for key in storage.list_keys("datasets/pets") if "/shards/" in key and "import-slices" not in key]
        time.sleep(0.01)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: the parent and its slice processes, nothing else
    output = child.communicate()[0]
    assert child.returncode == -signal.SIGKILL, f"the import ended before it could be killed: {output!r}"
    assert copied, output
    version = copied[0].split("/")[2]
    assert not storage.exists(index_key("pets", version))
    assert not storage.exists(latest_key("pets"))
    with pytest.raises(StorageError, match="has no complete version"):
        read_version(storage, "pets", version)
