"""Importing label folders (zip and storage prefix) into versioned datasets, on file:// and real S3."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from autovision.contract.keys import dataset_prefix, latest_key
from autovision.data import importer as importer_module
from autovision.data import inspection
from autovision.data.importer import DatasetImportError, ImportResult, SplitSettings, Task, import_dataset
from autovision.data.manifest import SPLITS, decode_manifest, labels_of
from autovision.data.sources.zip import ZipSource
from autovision.storage import Storage
from tests.test_dataset_support import assert_only_dataset_keys, image_bytes, labelled, write_files, write_zip


def _import_zip(
    tmp_path: Path, entries: dict[str, bytes], storage: Storage, name: str = "pets", **options: object
) -> ImportResult:
    return import_dataset(str(write_zip(tmp_path / f"{name}.zip", entries)), name, storage, **options)  # type: ignore[arg-type]


def _record_writes(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The keys written from now on (through either write method)."""
    written: set[str] = set()
    original_bytes, original_many = storage.write_bytes, storage.write_many

    def write_bytes(key: str, data: bytes) -> None:
        written.add(key)
        original_bytes(key, data)

    def write_many(objects: dict[str, bytes]) -> None:
        written.update(objects)
        original_many(objects)

    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    monkeypatch.setattr(storage, "write_many", write_many)
    return written


def test_digits_import_is_versioned_and_idempotent(
    digits_zip: Path, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = import_dataset(str(digits_zip), "digits", storage)
    assert first.report["kept"] == first.report["trainable"] == 1797
    assert sorted(first.report["perLabel"]) == [f"digit_{d}" for d in range(10)]
    prefix = dataset_prefix("digits", first.version)
    manifest = decode_manifest(storage.read_bytes(f"{prefix}/manifest.jsonl"))
    assert manifest == first.records
    assert {r.split for r in manifest} == set(SPLITS)
    assert storage.list_keys(f"{prefix}/images") == sorted(f"{prefix}/images/{r.sha256}.png" for r in manifest)
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
        assert file_storage.exists(f"{dataset_prefix('pets', version)}/manifest.jsonl")


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
    assert labels_of(result.records) == ["cat", "dog"]
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
    stored = {r.source: r.uri.rsplit(".", 1)[1] for r in result.records if "named_wrongly" in r.source}
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
    assert (pooled.version, pooled.records, pooled.report["rejects"]) == (
        inline.version,
        [r.model_copy(update={"uri": r.uri.replace("/storage/", "/pooled/")}) for r in inline.records],
        inline.report["rejects"],
    )


def test_an_interrupted_import_resumes(tmp_path: Path, file_storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = labelled(10)
    monkeypatch.setattr(importer_module, "WRITE_BATCH_IMAGES", 5)
    original = file_storage.write_many
    calls = 0

    def crash_on_third_batch(objects: dict[str, bytes]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("disk gone")
        original(objects)

    monkeypatch.setattr(file_storage, "write_many", crash_on_third_batch)
    with pytest.raises(OSError, match="disk gone"):
        _import_zip(tmp_path, entries, file_storage)
    assert not [key for key in file_storage.list_keys("") if key.endswith(("manifest.jsonl", "latest.json"))]
    monkeypatch.setattr(file_storage, "write_many", original)
    written = _record_writes(file_storage, monkeypatch)
    result = _import_zip(tmp_path, entries, file_storage)
    assert not result.reused
    assert len([key for key in written if "/images/" in key]) == 10, "only the images not yet written"
    assert len(file_storage.list_keys(f"{dataset_prefix('pets', result.version)}/images")) == 20


def test_a_source_that_changes_during_the_import_is_refused(
    tmp_path: Path, file_storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ZipSource, "read", lambda self, files: [image_bytes(424_242)] * len(files))
    with pytest.raises(DatasetImportError, match="changed during the import"):
        _import_zip(tmp_path, labelled(10), file_storage)
    assert not [key for key in file_storage.list_keys("") if key.endswith("manifest.jsonl")]


def test_a_local_folder_with_split_folders(tmp_path: Path, file_storage: Storage) -> None:
    folder = write_files(tmp_path / "photos", labelled(10, folder="train/") | labelled(2, folder="test/", offset=50))
    result = import_dataset(f"file://{folder}", "photos", file_storage)
    assert result.report["perLabel"]["dog"] == {"train": 9, "validation": 1, "test": 2}
