"""Builders shared by the dataset tests: real image files, zips, CSV indexes, and checks
that an import wrote nothing outside its own area. (No tests live here.)"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from autovision.contract.keys import shards_prefix
from autovision.storage import TEMP_INFIX, Storage

LABELS = ("cat", "dog")


def image_bytes(seed: int, image_format: str = "PNG", size: tuple[int, int] = (16, 16)) -> bytes:
    """A real, distinct noise image (different seeds differ in bytes and in dHash)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, mode="RGB")
    if image_format == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def labelled(count: int, labels: Iterable[str] = LABELS, offset: int = 0, folder: str = "") -> dict[str, bytes]:
    """``count`` distinct PNGs per label, as ``[folder]LABEL/N.png`` entries."""
    return {
        f"{folder}{label}/{i}.png": image_bytes(offset + 1000 * n + i)
        for n, label in enumerate(labels)
        for i in range(count)
    }


def write_zip(path: Path, entries: Mapping[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    """A zip of the entries, in order."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return path


def write_files(root: Path, files: Mapping[str, bytes]) -> Path:
    """Files under a folder, by relative path."""
    for name, data in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def tree(root: Path) -> set[str]:
    """Every file under a folder, relative to it."""
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def assert_only_dataset_keys(storage: Storage, name: str, others: Iterable[str] = ()) -> None:
    """Everything in storage belongs to the dataset's own area (or was there before), with no temporaries."""
    allowed = set(others)
    keys = [key for key in storage.list_keys("") if key not in allowed]
    assert all(key.startswith(f"datasets/{name}/") for key in keys), keys
    if storage.protocol == "file":
        leftovers = [path for path in Path(storage.root_path).rglob("*") if TEMP_INFIX in path.name]
        assert not leftovers, leftovers


def stored_extensions(storage: Storage, name: str, version: str) -> dict[str, str]:
    """Each stored image's extension by its hash, from the members of the version's shards."""
    extensions: dict[str, str] = {}
    for key in storage.list_keys(shards_prefix(name, version)):
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(key))) as tar:
            extensions.update(member.split(".", 1) for member in tar.getnames())  # type: ignore[misc]
    return extensions
