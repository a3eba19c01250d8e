"""Write a synthetic dataset of N small real images (JPEG and PNG, several labels), for import benchmarks.

    .venv/bin/python benchmarks/synthetic_dataset.py 100000 /tmp/synthetic          # a zip
    .venv/bin/python benchmarks/synthetic_dataset.py 100000 file:///tmp/prefix --prefix  # objects + index.csv

As a zip: ``<label>/<n>.<ext>`` entries (stored, not compressed: the images are).
As a storage prefix (``file://`` or ``s3://``): one object per image under
``<prefix>/images/`` and ``<prefix>/index.csv`` naming each with its label, the
CSV index the importer reads. Images are distinct (a seeded 4x4 colour pattern,
scaled up, with the image's number drawn as a bit stripe), so none is an exact
duplicate of another; every tenth is a PNG, the rest JPEGs. One image is built
at a time: memory stays flat whatever N.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from autovision.storage import Storage

LABELS = tuple(f"label_{n}" for n in range(10))
SIZE = 32
# Objects written to a storage prefix per call (concurrent on S3).
WRITE_BATCH = 512


def synthetic_image(number: int) -> tuple[str, str, bytes]:
    """Image ``number``: its label, extension and encoded bytes."""
    rng = np.random.default_rng(number)
    pixels = np.kron(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), np.ones((SIZE // 4, SIZE // 4, 1), np.uint8))
    bits = np.array([(number >> bit) & 1 for bit in range(SIZE)], dtype=np.uint8) * 255
    pixels[0, :, :] = bits[:, None]
    image_format, extension = ("PNG", "png") if number % 10 == 0 else ("JPEG", "jpg")
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format=image_format, quality=90)
    return LABELS[number % len(LABELS)], extension, buffer.getvalue()


def images(count: int) -> Iterator[tuple[str, bytes, str]]:
    """(relative path, bytes, label) of each image, one at a time."""
    for number in range(count):
        label, extension, data = synthetic_image(number)
        yield f"{label}/{number:07d}.{extension}", data, label


def write_zip(count: int, path: Path) -> Path:
    """The dataset as a zip of label folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data, _ in images(count):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def write_prefix(count: int, root: str) -> str:
    """The dataset as objects under a storage prefix with an index.csv; returns the index's URI."""
    storage = Storage(root)
    rows: list[str] = []
    batch: dict[str, bytes] = {}
    for name, data, label in images(count):
        key = f"images/{name}"
        batch[key] = data
        rows.append(f"{storage.uri(key)},{label}\n")
        if len(batch) == WRITE_BATCH:
            storage.write_many(batch)
            batch = {}
    storage.write_many(batch)
    storage.write_bytes("index.csv", "".join(rows).encode())
    return storage.uri("index.csv")


def main() -> None:
    """Write the dataset and print where it is."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("target", help="a folder for the zip, or a storage URI with --prefix")
    parser.add_argument("--prefix", action="store_true", help="write objects and index.csv under a storage prefix")
    args = parser.parse_args()
    if args.prefix:
        print(write_prefix(args.count, args.target))
    else:
        print(write_zip(args.count, Path(args.target) / f"synthetic-{args.count}.zip"))


if __name__ == "__main__":
    main()
