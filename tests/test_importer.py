"""Importing zips of label folders into versioned datasets (file:// and real S3)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from autovision.data.importer import DatasetImportError, import_zip
from autovision.data.manifest import dataset_prefix, decode_manifest
from autovision.storage import Storage


def _png(seed: int) -> bytes:
    image = Image.new("RGB", (12, 12), (seed * 7 % 256, seed * 13 % 256, seed * 29 % 256))
    image.putpixel((seed % 12, seed // 12 % 12), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _labelled(count: int) -> dict[str, bytes]:
    return {f"{label}/{i}.png": _png(i + 100 * n) for n, label in enumerate(("cat", "dog")) for i in range(count)}


def test_digits_import_is_versioned_and_idempotent(digits_zip: Path, storage: Storage) -> None:
    first = import_zip(str(digits_zip), "digits", storage)
    assert first.report["kept"] == 1797
    assert sorted(first.report["perLabel"]) == [f"digit_{d}" for d in range(10)]
    prefix = dataset_prefix("digits", first.version)
    manifest = decode_manifest(storage.read_bytes(f"{prefix}/manifest.jsonl"))
    assert len(manifest) == 1797
    assert {r.split for r in manifest} == {"train", "validation", "test"}
    assert storage.exists(manifest[0].uri.split(storage.root_path + "/", 1)[1])
    again = import_zip(str(digits_zip), "digits", storage)
    assert (again.version, again.reused) == (first.version, True)


def test_rejects_duplicates_and_conflicts(tmp_path: Path, file_storage: Storage) -> None:
    entries = _labelled(12)
    entries["cat/copy.png"] = entries["cat/0.png"]
    entries["dog/conflict.png"] = entries["cat/1.png"]
    entries["dog/broken.png"] = b"<html>403</html>"
    entries["dog/truncated.png"] = _png(5)[:40]
    result = import_zip(str(_zip(tmp_path / "d.zip", entries)), "pets", file_storage)
    report = result.report
    assert report["duplicates"] == 1
    assert report["conflicts"] == 1
    assert sorted(r["file"] for r in report["rejects"]) == ["dog/broken.png", "dog/truncated.png"]
    assert not {"cat/1.png", "dog/conflict.png"} & {r.source for r in result.records}
    assert report["kept"] == 23  # 24 distinct images minus the one seen under two labels


def test_fixed_split_folders_are_respected(tmp_path: Path, file_storage: Storage) -> None:
    entries = {f"train/{k}": v for k, v in _labelled(10).items()}
    entries |= {
        f"test/{label}/t{i}.png": _png(500 + i + 50 * n) for n, label in enumerate(("cat", "dog")) for i in range(2)
    }
    result = import_zip(str(_zip(tmp_path / "s.zip", entries)), "fixed", file_storage)
    assert result.report["perLabel"]["cat"] == {"train": 10, "validation": 0, "test": 2}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"../evil/x.png": _png(1)}, "unsafe path"),
        ({"/abs/x.png": _png(1)}, "unsafe path"),
        ({}, "holds no files"),
        ({"cat/0.png": _png(0), "dog/0.png": _png(1)}, "fewer than 10"),
    ],
)
def test_refused_archives_write_nothing(
    tmp_path: Path, file_storage: Storage, entries: dict[str, bytes], message: str
) -> None:
    with pytest.raises(DatasetImportError, match=message):
        import_zip(str(_zip(tmp_path / "bad.zip", entries)), "bad", file_storage)
    assert file_storage.list_keys("") == []


def test_not_a_zip_is_refused(tmp_path: Path, file_storage: Storage) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"plain text")
    with pytest.raises(DatasetImportError, match="not a zip"):
        import_zip(str(path), "bad", file_storage)
