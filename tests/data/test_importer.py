"""Importing label folders (zip and storage prefix) into versioned datasets, on file:// and real S3."""

from __future__ import annotations

import io
import json
import pickle
import signal
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from autovision.contract.keys import dataset_prefix, index_key, latest_key, shard_key, shards_prefix
from autovision.data import inspection
from autovision.data.importer import DatasetImportError, ImportLimits, ImportResult, SplitSettings, Task, import_dataset
from autovision.data.manifest import SPLITS, UNASSIGNED
from autovision.data.sources.zip import ZipSource
from autovision.data.versions import read_version
from autovision.storage import Storage, StorageError
from tests.support.datasets import (
    assert_only_dataset_keys,
    image_bytes,
    labelled,
    stored_extensions,
    tree,
    write_files,
    write_zip,
)
from tests.support.slow_storage import child_environment


def _import_zip(
    tmp_path: Path, entries: dict[str, bytes], storage: Storage, name: str = "pets", **options: object
) -> ImportResult:
    return import_dataset(str(write_zip(tmp_path / f"{name}.zip", entries)), name, storage, **options)  # type: ignore[arg-type]


def _record_writes(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The keys written from now on (through any write method)."""
    written: set[str] = set()
    original_bytes, original_many = storage.write_bytes, storage.write_many

    def write_bytes(key: str, data: bytes) -> None:
        written.add(key)
        original_bytes(key, data)

    def write_many(objects: dict[str, bytes]) -> None:
        written.update(objects)
        original_many(objects)

    def write_stream(key: str, chunks: Callable[[], Iterable[bytes]]) -> None:
        written.add(key)
        original_stream(key, chunks)

    original_stream = storage.write_stream
    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    monkeypatch.setattr(storage, "write_many", write_many)
    monkeypatch.setattr(storage, "write_stream", write_stream)
    return written


def test_digits_import_is_versioned_and_idempotent(
    digits_zip: Path, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = import_dataset(str(digits_zip), "digits", storage)
    assert first.report["kept"] == first.report["trainable"] == 1797
    assert sorted(first.report["perLabel"]) == [f"digit_{d}" for d in range(10)]
    prefix = dataset_prefix("digits", first.version)
    manifest = read_version(storage, "digits", first.version)
    assert manifest == first.records
    assert {r.split for r in manifest} == set(SPLITS)
    assert storage.list_keys(prefix) == [
        f"{prefix}/index.parquet",
        f"{prefix}/report.json",
        shard_key("digits", first.version, 0),
    ]
    assert storage.read_json(latest_key("digits")) == {"version": first.version}
    assert_only_dataset_keys(storage, "digits")

    written = _record_writes(storage, monkeypatch)
    again = import_dataset(str(digits_zip), "digits", storage)
    assert (again.version, again.reused, again.records) == (first.version, True, first.records)
    assert written == set(), "a re-import must rewrite nothing"


def test_changing_one_image_gives_a_new_version(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10)
    first = _import_zip(tmp_path, entries, file_storage)
    same = _import_zip(tmp_path, dict(reversed(entries.items())), file_storage)
    assert same.version == first.version, "entry order must not matter"
    entries["cat/3.png"] = image_bytes(99_999)
    changed = _import_zip(tmp_path, entries, file_storage)
    assert changed.version != first.version
    assert file_storage.read_json(latest_key("pets")) == {"version": changed.version}
    for version in (first.version, changed.version):
        assert file_storage.exists(index_key("pets", version))


def test_the_split_seed_and_task_are_part_of_the_version(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10)
    versions = {
        _import_zip(tmp_path, entries, file_storage).version,
        _import_zip(tmp_path, entries, file_storage, split=SplitSettings(seed=1)).version,
        _import_zip(tmp_path, entries, file_storage, task=Task.MULTI_LABEL).version,
    }
    assert len(versions) == 3


def test_duplicates_and_conflicting_labels(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(12)
    entries["cat/copy.png"] = entries["cat/0.png"]
    entries["dog/conflict.png"] = entries["cat/1.png"]
    result = _import_zip(tmp_path, entries, file_storage)
    report = result.report
    assert report["duplicateFiles"] == [{"file": "cat/copy.png", "duplicateOf": "cat/0.png"}]
    held_out = [record for record in result.records if record.split == "unassigned"]
    assert [(r.source, r.labels) for r in held_out] == [("cat/1.png", ["cat", "dog"])]
    assert report["conflictingLabels"] == [
        {"sha256": held_out[0].sha256, "files": ["cat/1.png", "dog/conflict.png"], "labels": ["cat", "dog"]}
    ]
    assert (report["total"], report["kept"], report["trainable"], report["duplicates"]) == (26, 24, 23, 1)
    assert report["perLabel"]["cat"] == {"train": 9, "validation": 1, "test": 1}
    assert result.records.label_set() == ["cat", "dog"]
    assert {w["reason"] for w in report["warnings"]} == {"ConflictingLabels", "FewImages"}


def test_multi_label_merges_the_same_image_under_several_labels(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10, labels=("cat", "dog", "outdoor"))
    entries["outdoor/cat0.png"] = entries["cat/0.png"]
    entries["outdoor/dog0.png"] = entries["dog/0.png"]
    result = _import_zip(tmp_path, entries, file_storage, task=Task.MULTI_LABEL)
    merged = {record.source: record.labels for record in result.records if len(record.labels) > 1}
    assert merged == {"cat/0.png": ["cat", "outdoor"], "dog/0.png": ["dog", "outdoor"]}
    assert result.report["conflicts"] == 0
    assert sum(result.report["perLabel"]["outdoor"].values()) == 12


def test_fixed_split_folders_are_kept(tmp_path: Path, file_storage: Storage) -> None:
    entries = (
        labelled(10, folder="train/") | labelled(2, folder="val/", offset=500) | labelled(2, folder="test/", offset=600)
    )
    result = _import_zip(tmp_path, entries, file_storage)
    assert result.report["perLabel"]["cat"] == {"train": 10, "validation": 2, "test": 2}
    assert result.report["splitsFromTrain"] == []


@pytest.mark.parametrize(
    ("fixed", "expected", "taken"),
    [
        ("test/", {"train": 16, "validation": 2, "test": 3}, ["validation"]),
        ("val/", {"train": 16, "validation": 3, "test": 2}, ["test"]),
        (None, {"train": 14, "validation": 2, "test": 2}, ["validation", "test"]),
    ],
)
def test_missing_splits_are_taken_from_train(
    tmp_path: Path, file_storage: Storage, fixed: str | None, expected: dict[str, int], taken: list[str]
) -> None:
    entries = labelled(18, folder="train/") | (labelled(3, folder=fixed, offset=500) if fixed else {})
    result = _import_zip(tmp_path, entries, file_storage)
    assert result.report["perLabel"]["cat"] == expected
    assert result.report["splitsFromTrain"] == taken
    assert "SplitsFromTrain" in {w["reason"] for w in result.report["warnings"]}


def test_an_image_in_two_split_folders_stays_in_train(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10, folder="train/") | labelled(2, folder="test/", offset=500)
    entries["test/cat/leak.png"] = entries["train/cat/0.png"]
    result = _import_zip(tmp_path, entries, file_storage)
    assert result.report["splitClashFiles"] == [
        {"file": "test/cat/leak.png", "splits": ["train", "test"], "keptIn": "train"}
    ]
    assert result.report["perLabel"]["cat"]["test"] == 2


def test_one_wrapping_folder_is_looked_through(tmp_path: Path, file_storage: Storage) -> None:
    result = _import_zip(tmp_path, labelled(10, folder="pets/"), file_storage)
    assert sorted(result.report["perLabel"]) == ["cat", "dog"]


def test_formats_are_judged_by_decoding_not_by_name(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10)
    formats = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "ICO": "ico", "WEBP": "webp"}
    for n, image_format in enumerate(formats):
        entries[f"cat/named_wrongly_{n}.tiff"] = image_bytes(5000 + n, image_format)
    result = _import_zip(tmp_path, entries, file_storage)
    members = stored_extensions(file_storage, "pets", result.version)
    stored = {r.source: members[r.sha256] for r in result.records if "named_wrongly" in r.source}
    assert sorted(stored.values()) == sorted(formats.values())
    assert result.report["rejected"] == 0


def test_near_duplicates_are_reported(tmp_path: Path, file_storage: Storage) -> None:
    entries = labelled(10)
    photo = Image.linear_gradient("L").rotate(30).resize((64, 64)).convert("RGB")
    ImageDraw.Draw(photo).ellipse((10, 20, 40, 50), fill=(200, 30, 30))
    smaller = io.BytesIO()
    photo.resize((48, 48), Image.Resampling.LANCZOS).save(smaller, format="JPEG", quality=60)
    original = io.BytesIO()
    photo.save(original, format="PNG")
    entries |= {"cat/original.png": original.getvalue(), "cat/resized.jpg": smaller.getvalue()}
    report = _import_zip(tmp_path, entries, file_storage).report
    near = report["nearDuplicateFiles"]
    assert [(n["file"], n["similarTo"]) for n in near] == [("cat/resized.jpg", "cat/original.png")]
    assert near[0]["distance"] <= 4


def test_a_storage_prefix_of_label_folders(storage: Storage) -> None:
    for key, data in labelled(10).items():
        storage.write_bytes(f"incoming/pets/{key}", data)
    storage.write_bytes("incoming/pets/.DS_Store", b"junk")
    result = import_dataset(storage.uri("incoming/pets"), "pets", storage)
    assert (result.report["kept"], result.report["ignored"]) == (20, 1)
    assert_only_dataset_keys(storage, "pets", others=storage.list_keys("incoming"))


def test_a_zip_in_storage(tmp_path: Path, storage: Storage) -> None:
    storage.write_bytes("incoming/pets.zip", write_zip(tmp_path / "pets.zip", labelled(10)).read_bytes())
    result = import_dataset(storage.uri("incoming/pets.zip"), "pets", storage)
    assert result.report["kept"] == 20
    assert_only_dataset_keys(storage, "pets", others=["incoming/pets.zip"])


def test_progress_is_reported(tmp_path: Path, file_storage: Storage) -> None:
    events: list[tuple[str, float | None]] = []

    class Recorder:
        def stage(self, title: str, total: float | None = None) -> None:
            events.append((title, total))

        def update(self, completed: float, detail: str = "") -> None:
            events.append(("update", completed))

        def note(self, message: str) -> None:
            events.append((message, None))

    _import_zip(tmp_path, labelled(10), file_storage, reporter=Recorder())
    stages = [index for index, (title, _) in enumerate(events) if title != "update"]
    assert [events[i][0].split()[0] for i in stages] == ["Checking", "Writing"]
    assert events[stages[1] - 1] == ("update", 20)
    assert events[-1] == ("update", 20)


def test_worker_processes_give_the_same_result(
    tmp_path: Path, file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = labelled(12) | {"dog/broken.png": b"not an image"}
    inline = _import_zip(tmp_path, entries, file_storage)
    monkeypatch.setattr(inspection, "INLINE_FILES", 3)
    monkeypatch.setattr(inspection, "BATCH_FILES", 2)
    pooled = _import_zip(tmp_path, entries, Storage(f"file://{tmp_path / 'pooled'}"))
    assert (pooled.version, list(pooled.records), pooled.report["rejects"]) == (
        inline.version,
        [r.model_copy(update={"uri": r.uri.replace("/storage/", "/pooled/")}) for r in inline.records],
        inline.report["rejects"],
    )


def test_an_interrupted_import_resumes(tmp_path: Path, file_storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = labelled(10)
    original = file_storage.write_stream
    calls = 0

    def crash_on_third_shard(key: str, chunks: Callable[[], Iterable[bytes]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk gone")
        original(key, chunks)

    shard_bytes = 4 * 1024  # a few images per shard
    monkeypatch.setattr(file_storage, "write_stream", crash_on_third_shard)
    with pytest.raises(OSError, match="disk gone"):
        _import_zip(tmp_path, entries, file_storage, shard_bytes=shard_bytes)
    assert not [key for key in file_storage.list_keys("") if key.endswith(("index.parquet", "latest.json"))]
    monkeypatch.setattr(file_storage, "write_stream", original)
    written = _record_writes(file_storage, monkeypatch)
    result = _import_zip(tmp_path, entries, file_storage, shard_bytes=shard_bytes)
    assert not result.reused
    shards = file_storage.list_keys(shards_prefix("pets", result.version))
    assert len(shards) > 3
    assert len([key for key in written if "/shards/" in key]) == len(shards) - 2, "only the shards not yet written"
    assert read_version(file_storage, "pets", result.version) == result.records


def test_a_source_that_changes_during_the_import_is_refused(
    tmp_path: Path, file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ZipSource, "read", lambda self, files: [image_bytes(424_242)] * len(files))
    with pytest.raises(DatasetImportError, match="changed during the import"):
        _import_zip(tmp_path, labelled(10), file_storage)
    assert not [key for key in file_storage.list_keys("") if key.endswith("index.parquet")]


def test_a_local_folder_with_split_folders(tmp_path: Path, file_storage: Storage) -> None:
    folder = write_files(tmp_path / "photos", labelled(10, folder="train/") | labelled(2, folder="test/", offset=50))
    result = import_dataset(f"file://{folder}", "photos", file_storage)
    assert result.report["perLabel"]["dog"] == {"train": 9, "validation": 1, "test": 2}


# --- property-based: whatever zip or CSV arrives, the import either succeeds (with
# rejects) or is refused with one readable line, and never writes outside its own area

NAME = "prop"
# Small caps, so that the size, ratio and line-length guards are reachable by small examples.
LIMITS = ImportLimits(
    max_image_bytes=4096,
    max_total_bytes=200_000,
    max_compression_ratio=20,
    ratio_floor_bytes=2048,
    max_entries=60,
    max_csv_line_bytes=120,
)
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@cache
def _image(seed: int) -> bytes:
    return image_bytes(seed)


@cache
def _valid_base() -> dict[str, bytes]:
    return labelled(10)


# Ordinary entries: label folders (good and bad), split folders, junk, odd depths.
folders = st.sampled_from(
    ["cat", "dog", "bird", "train/cat", "val/dog", "TEST/cat", "validation", "Bad Label", ".hidden", "__MACOSX",
     "x" * 40, "ünï", "cat/deeper", ""]
)  # fmt: skip
files = st.one_of(st.integers(0, 60).map(lambda n: f"e{n}.png"), st.sampled_from(["x", ".DS_Store"]))
ordinary_names = st.builds(lambda folder, file: f"{folder}/{file}".lstrip("/"), folders, files)
# At most one hostile entry per archive, so that most archives get past the safety checks.
hostile_names = st.sampled_from(["../x.png", "/abs/x.png", "cat/../../x.png", "C:/x.png", "cat\\x.png", ""])
valid_images = st.integers(0, 30).map(_image)
contents = st.one_of(
    valid_images,
    valid_images,
    st.integers(0, 30).map(lambda seed: _image(seed)[: len(_image(seed)) // 2]),
    st.binary(max_size=80),
    st.builds(lambda size: b"\0" * size, st.integers(0, 10_000)),
)
compressions = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
Entry = tuple[str, bytes, int, bool]
entries = st.lists(
    st.tuples(ordinary_names, contents, compressions, st.just(False)), max_size=12, unique_by=lambda entry: entry[0]
)
hostile_kinds = st.sampled_from([None] * 6 + ["unsafe path", "symbolic link", "listed twice"])
hostile_entries = st.builds(
    lambda kind, name, data: None if kind is None else (
        ("cat/0.png" if kind == "listed twice" else name), data, zipfile.ZIP_STORED, kind == "symbolic link"
    ),
    hostile_kinds,
    hostile_names,
    contents,
)  # fmt: skip
bases = st.sampled_from([True, True, True, False])


def _zip_bytes(base: bool, extra: list[Entry], path: Path) -> None:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # duplicate names are part of the game
        for name, data in (_valid_base() if base else {}).items():
            archive.writestr(name, data)
        for name, data, compression, symlink in extra:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # as a hostile tool would write it, unsanitised
            if symlink:
                info.create_system, info.external_attr = 3, 0o120777 << 16
            archive.writestr(info, data, compress_type=compression)


def _check_import(build: Callable[[Path], str], task: Task = Task.SINGLE_LABEL) -> None:
    """Build a source in a fresh folder, import it, and check the outcome and every write."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        source = build(root)
        before = tree(root)
        storage = Storage(f"file://{root / 'storage'}")
        try:
            result = import_dataset(source, NAME, storage, task=task, limits=LIMITS)
        except DatasetImportError as error:
            event("refused")
            _check_refusal(str(error), storage)
        else:
            event("imported with rejects" if result.report["rejected"] else "imported")
            _check_result(result, storage)
        written = tree(root) - before
        assert all(path.startswith(f"storage/datasets/{NAME}/") for path in written), written
        assert_only_dataset_keys(storage, NAME)


def _check_refusal(message: str, storage: Storage) -> None:
    assert message
    assert "\n" not in message
    assert storage.list_keys("") == []


def _check_result(result: ImportResult, storage: Storage) -> None:
    report = result.report
    merged = sum(len(conflict["files"]) - 1 for conflict in report["conflictingLabels"])
    assert report["total"] == report["rejected"] + report["kept"] + report["duplicates"] + merged
    manifest = read_version(storage, NAME, result.version)
    assert manifest == result.records
    for record in manifest:
        assert record.split in (*SPLITS, UNASSIGNED)
        assert (record.split == UNASSIGNED) == (
            not record.labels or (len(record.labels) > 1 and report["task"] == "SingleLabel")
        )


@PROPERTY_SETTINGS
@given(base=bases, extra=entries, hostile=hostile_entries, position=st.integers(0, 12))
def test_any_zip_structure(base: bool, extra: list[Entry], hostile: Entry | None, position: int) -> None:
    def build(root: Path) -> str:
        _zip_bytes(base, extra if hostile is None else [*extra[:position], hostile, *extra[position:]], root / "in.zip")
        return str(root / "in.zip")

    _check_import(build)


@PROPERTY_SETTINGS
@given(
    cut=st.integers(0, 2**20),
    patches=st.lists(st.tuples(st.integers(0, 2**20), st.binary(min_size=1, max_size=4)), max_size=6),
    compression=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]),
)
def test_any_corruption_of_a_valid_zip(cut: int, patches: list[tuple[int, bytes]], compression: int) -> None:
    def build(root: Path) -> str:
        path = root / "in.zip"
        _zip_bytes(True, [("cat/extra.png", _image(99), compression, False)], path)
        data = bytearray(path.read_bytes())
        for offset, patch in patches:
            position = offset % len(data)
            data[position : position + len(patch)] = patch
        path.write_bytes(bytes(data[: max(cut, len(data) // 2)]))
        return str(path)

    _check_import(build)


set_fields = st.sampled_from(["", "TRAIN", "VALIDATION", "TEST", "UNASSIGNED", "train", "BOGUS", '"TEST"'])
uri_fields = st.one_of(
    st.integers(0, 25).map(lambda i: f"img/{i}.png"),
    st.sampled_from(
        ["img/broken.png", "missing/1.png", "gs://b/x.png", "http://127.0.0.1:9/x.png", "", "img", "../../x.png",
         "file:///nonexistent/x.png", '"img/1.png"', "img/big.png"]
    ),
)  # fmt: skip
label_fields = st.lists(st.sampled_from(["cat", "dog", "bird", "", "bad label", "x" * 33, '"cat"']), max_size=3)
structured_rows = st.builds(
    lambda split, uri, labels: ",".join([*([split] if split else []), uri, *labels]).encode(),
    set_fields,
    uri_fields,
    label_fields,
)
rows = st.lists(st.one_of(structured_rows, st.binary(max_size=60)), max_size=25)


@PROPERTY_SETTINGS
@given(
    base=st.booleans(),
    extra=rows,
    newline=st.sampled_from([b"\n", b"\r\n"]),
    bom=st.booleans(),
    multi=st.booleans(),
)
def test_any_csv_structure(base: bool, extra: list[bytes], newline: bytes, bom: bool, multi: bool) -> None:
    def build(root: Path) -> str:
        images = {f"img/{i}.png": _image(i) for i in range(20)}
        write_files(root, images | {"img/broken.png": b"<html>", "img/big.png": image_bytes(5, "BMP", (64, 64))})
        base_rows = [f"{name},{'cat' if i < 10 else 'dog'}".encode() for i, name in enumerate(images)] if base else []
        (root / "index.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join([*base_rows, *extra]))
        return str(root / "index.csv")

    _check_import(build, Task.MULTI_LABEL if multi else Task.SINGLE_LABEL)


# --- the real data sets in ../shared/datasets: flowers.zip (12 planted problems) and
# cifar10.zip (60,000 images, fixed split folders); heavy: slow, skipped where ../shared is absent

SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
needs_shared_datasets = pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"{SHARED_DATASETS} is absent")
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FORMAT_EXTENSIONS = {"format_png": "png", "format_gif": "gif", "format_bmp": "bmp"}


def _found(kind: str, planted: dict[str, Any], report: dict[str, Any], extensions: dict[str, str]) -> bool:
    """Whether the report shows one planted problem as the right kind."""
    path, original = planted["path"], planted.get("of")
    if kind == "exact_duplicate":
        return {"file": path, "duplicateOf": original} in report["duplicateFiles"]
    if kind == "near_duplicate":
        return any(n["file"] == path and n["similarTo"] == original for n in report["nearDuplicateFiles"])
    if kind == "cross_label_duplicate":
        return any(c["files"] == sorted([path, original]) for c in report["conflictingLabels"])
    reject: dict[str, str] = next((reject for reject in report["rejects"] if reject["file"] == path), {})
    if kind == "truncated_jpeg":
        return reject.get("reason") == "corrupt_image" and "truncated" in reject["message"]
    if kind == "not_an_image":
        return reject.get("reason") == "not_an_image"
    return extensions.get(path) == FORMAT_EXTENSIONS[kind]


@pytest.mark.slow
@needs_shared_datasets
def test_flowers_every_planted_problem_is_found(file_storage: Storage) -> None:
    planted = json.loads((SHARED_DATASETS / "flowers_planted.json").read_text())["planted"]
    result = import_dataset(str(SHARED_DATASETS / "flowers.zip"), "flowers", file_storage)
    report = result.report
    members = stored_extensions(file_storage, "flowers", result.version)
    extensions = {record.source: members[record.sha256] for record in result.records}
    missed = [p["path"] for p in planted if not _found(p["kind"], p, report, extensions)]
    assert missed == []
    assert len(planted) == 12
    # Nothing beyond the planted problems is reported.
    assert (report["rejected"], report["duplicates"], report["nearDuplicates"], report["conflicts"]) == (2, 3, 2, 2)
    assert (report["total"], report["kept"], report["trainable"]) == (3865, 3858, 3856)
    assert sorted(report["perLabel"]) == ["daisy", "dandelion", "rose", "sunflower", "tulip"]

    again = import_dataset(str(SHARED_DATASETS / "flowers.zip"), "flowers", file_storage)
    assert (again.version, again.reused) == (result.version, True)


@pytest.mark.slow
@needs_shared_datasets
def test_cifar10_with_its_fixed_split(file_storage: Storage) -> None:
    result = import_dataset(str(SHARED_DATASETS / "cifar10.zip"), "cifar10", file_storage)
    report = result.report
    assert (report["total"], report["kept"], report["rejected"]) == (60_000, 60_000, 0)
    assert sorted(report["perLabel"]) == CIFAR10_LABELS
    for counts in report["perLabel"].values():
        # The official 5,000/1,000 split; validation is a stratified ninth of train (80:10).
        assert counts == {"train": 4444, "validation": 556, "test": 1000}
    assert report["splitsFromTrain"] == ["validation"]
    assert {record.split for record in result.records} == set(SPLITS)
    assert len(read_version(file_storage, "cifar10", result.version)) == 60_000


# Imports one zip into one storage with a shard per image, from pickled (zip, name, root, settings); each
# write waits a little, so that the import is still writing when it is killed, however fast the machine.
_KILLABLE_IMPORT = """
import pickle, sys
from autovision.data.importer import import_dataset
from tests.support.slow_storage import SlowStorage

with open(sys.argv[1], "rb") as arguments:
    source, name, root, settings = pickle.load(arguments)
import_dataset(source, name, SlowStorage(root, settings), shard_bytes=1)
"""


def test_an_import_killed_mid_way_leaves_no_complete_version(tmp_path: Path, storage: Storage) -> None:
    source = write_zip(tmp_path / "pets.zip", labelled(60))
    arguments = tmp_path / "arguments.pickle"
    arguments.write_bytes(pickle.dumps((str(source), "pets", storage.uri(""), storage.settings)))
    command = [sys.executable, "-c", _KILLABLE_IMPORT, str(arguments)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_environment())
    deadline = time.monotonic() + 120
    shards: list[str] = []
    while not shards and child.poll() is None and time.monotonic() < deadline:
        shards = [key for key in storage.list_keys("datasets/pets") if "/shards/" in key]
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    output = child.communicate()[0]
    assert child.returncode == -signal.SIGKILL, f"the import ended before it could be killed: {output!r}"
    assert shards, output
    version = shards[0].split("/")[2]
    assert not storage.exists(index_key("pets", version))
    assert not storage.exists(latest_key("pets"))
    with pytest.raises(StorageError, match="has no complete version"):
        read_version(storage, "pets", version)
