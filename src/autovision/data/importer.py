"""Import a zip of label folders into an immutable, content-addressed dataset version.

Two passes over the archive keep memory flat: the first decodes and hashes every
entry (keeping only metadata), the second copies the kept images into storage.
The manifest is written last, so a version without one is incomplete and ignored.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from autovision.data.manifest import (
    SPLITS,
    ImageRecord,
    SplitName,
    dataset_prefix,
    encode_manifest,
)
from autovision.data.split import stratified_split
from autovision.storage import Storage, open_uri

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "ICO": "ico", "WEBP": "webp"}
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,32}$")
SPLIT_FOLDERS: dict[str, SplitName] = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
MAX_IMAGE_BYTES = 30 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024**3
MAX_COMPRESSION_RATIO = 200
MIN_IMAGES_PER_LABEL = 10

ProgressCallback = Callable[[int, int], None]


class DatasetImportError(ValueError):
    """The whole import is refused; the message says why in one line."""


@dataclass(frozen=True)
class SplitSettings:
    """Integer percentages and seed of the automatic split."""

    train: int = 80
    validation: int = 10
    test: int = 10
    seed: int = 0

    @property
    def percentages(self) -> tuple[int, int, int]:
        return (self.train, self.validation, self.test)


@dataclass
class _Entry:
    name: str
    label: str
    fixed_split: SplitName | None
    sha256: str
    extension: str
    width: int
    height: int


@dataclass
class ImportResult:
    """What an import produced: the version, its records and its report."""

    name: str
    version: str
    records: list[ImageRecord]
    report: dict[str, Any]
    reused: bool = False
    rejects: list[dict[str, str]] = field(default_factory=list)


def _check_archive(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Refuse hostile or empty archives before reading any entry."""
    members = [info for info in archive.infolist() if not info.is_dir()]
    for info in members:
        normalised = posixpath.normpath(info.filename)
        if info.filename.startswith("/") or normalised.startswith("..") or "\\" in info.filename:
            raise DatasetImportError(f"unsafe path in archive: {info.filename!r}")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DatasetImportError(f"symbolic link in archive: {info.filename!r}")
        if info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
            raise DatasetImportError(f"suspicious compression ratio for {info.filename!r}")
    if sum(info.file_size for info in members) > MAX_TOTAL_BYTES:
        raise DatasetImportError("archive expands beyond the 20 GiB import limit")
    images = [info for info in members if not _is_hidden(info.filename)]
    if not images:
        raise DatasetImportError("archive holds no files")
    return images


def _is_hidden(name: str) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in name.split("/"))


def _label_and_split(name: str) -> tuple[str, SplitName | None]:
    parts = name.split("/")
    if len(parts) == 2:
        return parts[0], None
    if len(parts) == 3 and parts[0].lower() in SPLIT_FOLDERS:
        return parts[1], SPLIT_FOLDERS[parts[0].lower()]
    raise ValueError("expected LABEL/FILE or SPLIT/LABEL/FILE")


def _inspect(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Entry:
    """Decode one entry fully; raise ValueError with the rejection reason."""
    label, fixed_split = _label_and_split(info.filename)
    if not LABEL_PATTERN.match(label):
        raise ValueError(f"label {label!r} is not 1-32 characters of [A-Za-z0-9_]")
    if info.file_size > MAX_IMAGE_BYTES:
        raise ValueError("image larger than 30 MB")
    data = archive.read(info)
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format or ""
            image.load()
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"not a decodable image ({error.__class__.__name__})") from error
    if image_format not in ALLOWED_FORMATS:
        raise ValueError(f"unsupported image format {image_format or 'unknown'}")
    return _Entry(
        name=info.filename,
        label=label,
        fixed_split=fixed_split,
        sha256=hashlib.sha256(data).hexdigest(),
        extension=ALLOWED_FORMATS[image_format],
        width=width,
        height=height,
    )


def _dedupe(entries: list[_Entry]) -> tuple[list[_Entry], list[dict[str, str]], list[dict[str, Any]]]:
    """Keep each distinct image once; hold out images seen under conflicting labels."""
    by_hash: dict[str, list[_Entry]] = defaultdict(list)
    for entry in entries:
        by_hash[entry.sha256].append(entry)
    kept: list[_Entry] = []
    duplicates: list[dict[str, str]] = []
    conflicts: list[dict[str, Any]] = []
    for sha256 in sorted(by_hash):
        group = sorted(by_hash[sha256], key=lambda e: e.name)
        if len({entry.label for entry in group}) > 1:
            conflicts.append(
                {"sha256": sha256, "files": [e.name for e in group], "labels": sorted({e.label for e in group})}
            )
            continue
        kept.append(group[0])
        duplicates.extend({"file": e.name, "duplicateOf": group[0].name} for e in group[1:])
    return kept, duplicates, conflicts


def _assign_splits(kept: list[_Entry], split: SplitSettings) -> dict[str, SplitName]:
    if any(entry.fixed_split for entry in kept):
        return {entry.sha256: entry.fixed_split or "train" for entry in kept}
    return stratified_split([(e.sha256, e.label) for e in kept], split.percentages, split.seed)


def _content_version(kept: list[_Entry], assignment: dict[str, SplitName]) -> str:
    """Content address of a version: its images, labels and splits, nothing else."""
    digest = hashlib.sha256()
    for entry in sorted(kept, key=lambda e: e.sha256):
        digest.update(f"{entry.sha256}\t{entry.label}\t{assignment[entry.sha256]}\n".encode())
    return f"sha256-{digest.hexdigest()[:32]}"


def _build_report(
    records: list[ImageRecord],
    total: int,
    rejects: list[dict[str, str]],
    duplicates: list[dict[str, str]],
    conflicts: list[dict[str, Any]],
) -> dict[str, Any]:
    per_label: dict[str, dict[str, int]] = {}
    for record in records:
        counts = per_label.setdefault(record.labels[0], dict.fromkeys(SPLITS, 0))
        counts[record.split] += 1
    sizes = [sum(c.values()) for c in per_label.values()]
    return {
        "total": total,
        "kept": len(records),
        "rejected": len(rejects),
        "duplicates": len(duplicates),
        "conflicts": len(conflicts),
        "perLabel": dict(sorted(per_label.items())),
        "imbalanceRatio": round(max(sizes) / min(sizes), 3) if sizes else None,
        "rejects": rejects,
        "duplicateFiles": duplicates,
        "conflictingLabels": conflicts,
    }


def _check_label_minimum(records: list[ImageRecord]) -> None:
    counts = Counter(record.labels[0] for record in records)
    too_small = sorted(label for label, n in counts.items() if n < MIN_IMAGES_PER_LABEL)
    if too_small:
        raise DatasetImportError(f"labels with fewer than {MIN_IMAGES_PER_LABEL} images: {', '.join(too_small)}")
    if len(counts) < 2:
        raise DatasetImportError("a classifier needs at least 2 labels")


def import_zip(
    source: str,
    name: str,
    storage: Storage,
    split: SplitSettings | None = None,
    on_progress: ProgressCallback | None = None,
) -> ImportResult:
    """Validate, dedupe, split and store a zip of label folders as a dataset version.

    Re-importing the same data yields the same version and rewrites nothing.
    """
    if not LABEL_PATTERN.match(name.replace("-", "_")):
        raise DatasetImportError(f"dataset name {name!r} must be 1-32 characters of [A-Za-z0-9_-]")
    split = split or SplitSettings()
    with open_uri(source, storage.settings) as handle:
        if not zipfile.is_zipfile(handle):
            raise DatasetImportError(f"{source} is not a zip archive")
        handle.seek(0)
        with zipfile.ZipFile(handle) as archive:
            members = _check_archive(archive)
            entries, rejects = _inspect_all(archive, members, on_progress)
            kept, duplicates, conflicts = _dedupe(entries)
            assignment = _assign_splits(kept, split)
            version = _content_version(kept, assignment)
            records = _records(kept, assignment, name, storage, version)
            _check_label_minimum(records)
            report = _build_report(records, len(members), rejects, duplicates, conflicts)
            prefix = dataset_prefix(name, version)
            reused = storage.exists(f"{prefix}/manifest.jsonl")
            if not reused:
                _write_images(archive, kept, prefix, storage)
                storage.write_json(f"{prefix}/report.json", report)
                storage.write_bytes(f"{prefix}/manifest.jsonl", encode_manifest(records))
    storage.write_json(f"datasets/{name}/latest.json", {"version": version})
    return ImportResult(name=name, version=version, records=records, report=report, reused=reused, rejects=rejects)


def _inspect_all(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], on_progress: ProgressCallback | None
) -> tuple[list[_Entry], list[dict[str, str]]]:
    entries: list[_Entry] = []
    rejects: list[dict[str, str]] = []
    for index, info in enumerate(members, start=1):
        try:
            entries.append(_inspect(archive, info))
        except ValueError as error:
            rejects.append({"file": info.filename, "reason": str(error)})
        if on_progress:
            on_progress(index, len(members))
    return entries, rejects


def _records(
    kept: list[_Entry], assignment: dict[str, SplitName], name: str, storage: Storage, version: str
) -> list[ImageRecord]:
    prefix = dataset_prefix(name, version)
    return [
        ImageRecord(
            uri=storage.uri(f"{prefix}/images/{e.sha256}.{e.extension}"),
            sha256=e.sha256,
            labels=[e.label],
            split=assignment[e.sha256],
            width=e.width,
            height=e.height,
            source=e.name,
        )
        for e in kept
    ]


def _write_images(archive: zipfile.ZipFile, kept: list[_Entry], prefix: str, storage: Storage, chunk: int = 64) -> None:
    """Copy kept images in small concurrent batches (memory stays bounded by ``chunk``)."""
    for start in range(0, len(kept), chunk):
        storage.write_many(
            {f"{prefix}/images/{e.sha256}.{e.extension}": archive.read(e.name) for e in kept[start : start + chunk]}
        )
