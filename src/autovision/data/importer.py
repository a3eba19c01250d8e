"""Import a zip, CSV index or storage prefix into an immutable, content-addressed dataset version.

Two passes keep memory flat: the first streams every file once to validate, hash
and fingerprint it (keeping only metadata), the second copies the kept images
into storage a bounded chunk at a time. Everything that can refuse the import is
decided before the first write, and the manifest is written last: a version
without one is incomplete, ignored by readers, and finished by the next import.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autovision.contract.files import LatestVersion
from autovision.contract.keys import dataset_prefix, latest_key, manifest_key, report_key
from autovision.data.batching import bounded_batches
from autovision.data.curate import DistinctImage, Entry, assign_splits, content_version, curate
from autovision.data.inspection import inspect_all
from autovision.data.manifest import ImageRecord, SplitName, encode_manifest
from autovision.data.near_duplicates import find_near_duplicates
from autovision.data.report import ImportFindings, build_report, check_trainable
from autovision.data.rules import DatasetImportError, ImportLimits, Rejection, check_dataset_name
from autovision.data.sources import Source, open_source
from autovision.data.split import SplitSettings
from autovision.progress import Reporter
from autovision.resources import Task
from autovision.storage import Storage, StorageError

__all__ = [
    "DatasetImportError",
    "ImportLimits",
    "ImportResult",
    "SplitSettings",
    "Task",
    "import_dataset",
    "load_report",
]

# Images written per storage batch (concurrent on S3): at most this many, and this many bytes.
WRITE_BATCH_IMAGES = 256
WRITE_BATCH_BYTES = 16 * 1024 * 1024
PROGRESS_INTERVAL_S = 0.2


@dataclass
class ImportResult:
    """What an import produced: the version, its records and its report."""

    name: str
    version: str
    records: list[ImageRecord]
    report: dict[str, Any]
    reused: bool = False


class _Progress:
    """Forwards progress to a reporter at most every ``PROGRESS_INTERVAL_S`` seconds."""

    def __init__(self, reporter: Reporter | None) -> None:
        self.reporter = reporter
        self.last = 0.0

    def stage(self, title: str, total: float | None) -> None:
        if self.reporter:
            self.reporter.stage(title, total)

    def update(self, completed: float, detail: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if self.reporter and (force or now - self.last >= PROGRESS_INTERVAL_S):
            self.last = now
            self.reporter.update(completed, detail)


def import_dataset(
    source: str,
    name: str,
    storage: Storage,
    split: SplitSettings | None = None,
    *,
    task: Task = Task.SINGLE_LABEL,
    reporter: Reporter | None = None,
    limits: ImportLimits | None = None,
) -> ImportResult:
    """Validate, dedupe, split and store a zip, CSV index or prefix as a dataset version.

    Raises DatasetImportError (one readable line, nothing written) when the whole
    import is refused. Re-importing the same data yields the same version and
    rewrites nothing.
    """
    check_dataset_name(name)
    split = split or SplitSettings()
    limits = limits or ImportLimits.from_image_limits(storage.settings.image_limits())
    progress = _Progress(reporter)
    multi_label = task is Task.MULTI_LABEL
    with open_source(source, storage.settings, limits, multi_label) as opened:
        entries, rejects = _scan(opened, limits, progress)
        curated = curate(entries, multi_label)
        splits, carved = assign_splits(curated.images, split)
        version = content_version(task.value, curated.images, splits)
        prefix = dataset_prefix(name, version)
        records = [_record(image, splits[image.facts.sha256], prefix, storage) for image in curated.images]
        findings = ImportFindings(
            name=name,
            version=version,
            task=task.value,
            source=source,
            total=len(entries) + len(rejects),
            ignored=opened.ignored,
            rejects=rejects,
            curated=curated,
            near_duplicates=find_near_duplicates([image.facts.dhash for image in curated.images]),
            taken_from_train=carved,
        )
        report = build_report(findings, records)
        check_trainable(report)
        reused = storage.exists(manifest_key(name, version))
        if not reused:
            _write_images(opened, storage, prefix, curated.images, progress)
            storage.write_json(report_key(name, version), report)
            storage.write_bytes(manifest_key(name, version), encode_manifest(records))
    _point_latest(storage, name, version)
    return ImportResult(name=name, version=version, records=records, report=report, reused=reused)


def load_report(storage: Storage, name: str, version: str | None = None) -> dict[str, Any]:
    """The report of a dataset's version (its latest when none is given), for ``describe``."""
    check_dataset_name(name)
    try:
        version = version or LatestVersion.model_validate(storage.read_json(latest_key(name))).version
        report: dict[str, Any] = storage.read_json(report_key(name, version))
    except StorageError as error:
        raise StorageError(f"dataset {name!r} has no imported version in {storage.uri('datasets')}") from error
    return report


def _scan(source: Source, limits: ImportLimits, progress: _Progress) -> tuple[list[Entry], list[Rejection]]:
    """Pass 1: validate every file the source offers, keeping metadata only."""
    entries: list[Entry] = []
    rejects: list[Rejection] = []
    progress.stage(f"Checking {source.description}", source.total)
    for inspected in inspect_all(source.scan(), limits):
        if isinstance(inspected, Rejection):
            rejects.append(inspected)
        else:
            offer, facts = inspected
            if isinstance(facts, Rejection):
                rejects.append(Rejection(facts.file, facts.reason, facts.message, offer.line))
            else:
                entries.append(Entry(offer.file, offer.labels, offer.split, facts))
        progress.update(source.position, f"{len(entries)} images, {len(rejects)} rejected")
    progress.update(source.position, f"{len(entries)} images, {len(rejects)} rejected", force=True)
    return entries, rejects


def _image_key(prefix: str, image: DistinctImage) -> str:
    return f"{prefix}/images/{image.facts.sha256}.{image.facts.extension}"


def _record(image: DistinctImage, split: SplitName, prefix: str, storage: Storage) -> ImageRecord:
    return ImageRecord(
        uri=storage.uri(_image_key(prefix, image)),
        sha256=image.facts.sha256,
        labels=list(image.labels),
        split=split,
        width=image.facts.width,
        height=image.facts.height,
        source=image.file,
    )


def _write_images(
    source: Source, storage: Storage, prefix: str, images: Sequence[DistinctImage], progress: _Progress
) -> None:
    """Pass 2: copy the images not yet stored (an interrupted import resumes), checking each hash."""
    present = set(storage.list_keys(f"{prefix}/images"))
    missing = [image for image in images if _image_key(prefix, image) not in present]
    progress.stage("Writing images", len(missing))
    written = 0
    for batch in bounded_batches(missing, WRITE_BATCH_IMAGES, WRITE_BATCH_BYTES, lambda image: image.facts.size):
        storage.write_many(_read_batch(source, prefix, batch))
        written += len(batch)
        progress.update(written, f"{written} of {len(missing)}")
    progress.update(written, f"{written} of {len(missing)}", force=True)


def _read_batch(source: Source, prefix: str, batch: list[DistinctImage]) -> dict[str, bytes]:
    """A batch's images keyed by storage key, each checked against the hash the scan saw."""
    contents = source.read([image.file for image in batch])
    for image, data in zip(batch, contents, strict=True):
        if hashlib.sha256(data).hexdigest() != image.facts.sha256:
            raise DatasetImportError(f"{image.file!r} changed during the import: import again")
    return {_image_key(prefix, image): data for image, data in zip(batch, contents, strict=True)}


def _point_latest(storage: Storage, name: str, version: str) -> None:
    """Make ``version`` the dataset's latest, unless it already is (nothing is rewritten)."""
    key = latest_key(name)
    latest = LatestVersion(version=version)
    if storage.exists(key) and LatestVersion.model_validate(storage.read_json(key)) == latest:
        return
    storage.write_json(key, latest.to_json())
