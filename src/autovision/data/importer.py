"""Import a zip, CSV index or storage prefix into an immutable, content-addressed dataset version.

Two passes keep memory flat: the first streams every file once to validate, hash
and fingerprint it (keeping only metadata), the second packs the kept images, in
the order of their hashes, into shards (``autovision.data.shards``), one batch of
images in memory at a time (a shard streams into storage). Everything that can refuse the import is decided before the
first write, and the index is written last: a version without one is incomplete,
ignored by readers, and finished by the next import (which skips the shards
already written whole).
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from autovision.contract.files import DATASET_FORMAT, DatasetIndexHeader, ImportReportSummary, LatestVersion, ShardFacts
from autovision.contract.keys import index_key, latest_key, report_key, shard_key, shards_prefix
from autovision.data.batching import bounded_batches
from autovision.data.curate import DistinctImage, Entry, assign_splits, content_version, curate
from autovision.data.inspection import inspect_all
from autovision.data.manifest import ImageRecord, SplitName, encode_index
from autovision.data.near_duplicates import find_near_duplicates
from autovision.data.report import ImportFindings, build_report, check_trainable
from autovision.data.rules import DatasetImportError, ImportLimits, Rejection, check_dataset_name
from autovision.data.shards import SHARD_BYTES, Placement, member_name, pack_chunks, plan_shards
from autovision.data.sources import Source, open_source
from autovision.data.sources.previous import UnionSource, VersionSource
from autovision.data.split import SplitSettings
from autovision.data.versions import read_version
from autovision.progress import Reporter
from autovision.resources import Task
from autovision.storage import Storage, StorageError, member_uri, object_sizes

__all__ = [
    "DatasetImportError",
    "ImportLimits",
    "ImportResult",
    "SplitSettings",
    "Task",
    "import_dataset",
    "load_report",
]

# Images read from the source at a time while packing a shard: at most this many, and this many bytes.
READ_BATCH_IMAGES = 256
READ_BATCH_BYTES = 16 * 1024 * 1024
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
    shard_bytes: int = SHARD_BYTES,
    add_to_previous: bool = False,
) -> ImportResult:
    """Validate, dedupe, split and store a zip, CSV index or prefix as a dataset version.

    With ``add_to_previous`` the version is the dataset's latest version (its
    images keeping their labels and splits) plus the source's images: how a
    labelled review set joins the data (``autovision.data.sources.previous``).
    Raises DatasetImportError (one readable line, nothing written) when the whole
    import is refused. Re-importing the same data yields the same version and
    rewrites nothing.
    """
    check_dataset_name(name)
    split = split or SplitSettings()
    limits = limits or ImportLimits.from_image_limits(storage.settings.image_limits())
    progress = _Progress(reporter)
    multi_label = task is Task.MULTI_LABEL
    previous = _previous_version(source, name, storage, task) if add_to_previous else None
    opening = open_source(source, storage.settings, limits, multi_label)
    with opening if previous is None else UnionSource(previous, opening) as opened:
        source = opened.description if previous is not None else source
        entries, rejects = _scan(opened, limits, progress)
        curated = curate(entries, multi_label)
        splits, carved = assign_splits(curated.images, split)
        version = content_version(task.value, curated.images, splits)
        # Packed in the order of their hashes: the same images give the same shards, whatever the source's order.
        ordered = sorted(curated.images, key=lambda image: image.facts.sha256)
        placements, lengths = plan_shards([image.facts.size for image in ordered], shard_bytes)
        shard_uris = [storage.uri(shard_key(name, version, number)) for number in range(len(lengths))]
        records = [
            _record(image, splits[image.facts.sha256], shard_uris[placement.shard], placement)
            for image, placement in zip(ordered, placements, strict=True)
        ]
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
        reused = storage.exists(index_key(name, version))
        if not reused:
            shards = _write_shards(
                opened,
                storage,
                name=name,
                version=version,
                images=ordered,
                placements=placements,
                lengths=lengths,
                progress=progress,
            )
            storage.write_json(report_key(name, version), report)
            header = DatasetIndexHeader(format_version=DATASET_FORMAT, shards=shards)
            index = encode_index(records, [placement.shard for placement in placements], header)
            storage.write_bytes(index_key(name, version), index)
    _point_latest(storage, name, version)
    return ImportResult(name=name, version=version, records=records, report=report, reused=reused)


def _previous_version(source: str, name: str, storage: Storage, task: Task) -> VersionSource:
    """The dataset's latest version as a source to add ``source`` to; DatasetImportError when there is none
    or its task is another."""
    if not storage.exists(latest_key(name)):
        message = f"dataset {name!r} has no version to add {source} to: import it without --add-to-previous"
        raise DatasetImportError(message)
    version = LatestVersion.model_validate(storage.read_json(latest_key(name))).version
    previous = ImportReportSummary.model_validate(storage.read_json(report_key(name, version)))
    if previous.task != task:
        raise DatasetImportError(f"dataset {name!r} version {version} is {previous.task.value}, not {task.value}")
    return VersionSource(read_version(storage, name, version), storage.settings, f"{name} {version}")


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


def _record(image: DistinctImage, split: SplitName, shard_uri: str, placement: Placement) -> ImageRecord:
    return ImageRecord(
        uri=member_uri(shard_uri, placement.offset, image.facts.size),
        sha256=image.facts.sha256,
        labels=list(image.labels),
        split=split,
        width=image.facts.width,
        height=image.facts.height,
        source=image.file,
    )


def _write_shards(
    source: Source,
    storage: Storage,
    *,
    name: str,
    version: str,
    images: Sequence[DistinctImage],
    placements: Sequence[Placement],
    lengths: Sequence[int],
    progress: _Progress,
) -> list[ShardFacts]:
    """Pass 2: pack and write each shard not yet written whole (an interrupted import resumes), one at a time."""
    keys = [shard_key(name, version, number) for number in range(len(lengths))]
    present = set(storage.list_keys(shards_prefix(name, version)))
    sizes = object_sizes([storage.uri(key) for key in keys if key in present], storage.settings)
    written = dict(zip([key for key in keys if key in present], sizes, strict=True))
    progress.stage("Writing shards", len(images))
    facts: list[ShardFacts] = []
    start = 0
    for number, length in enumerate(lengths):
        end = start
        while end < len(images) and placements[end].shard == number:
            end += 1
        members = images[start:end]
        if written.get(keys[number]) != length:
            storage.write_stream(keys[number], functools.partial(_shard_chunks, source, members, length))
        facts.append(ShardFacts(number=number, size=length, images=len(members)))
        start = end
        progress.update(end, f"{number + 1} of {len(lengths)} shards")
    progress.update(len(images), f"{len(lengths)} shards", force=True)
    return facts


def _shard_chunks(source: Source, images: Sequence[DistinctImage], length: int) -> Iterator[bytes]:
    """A shard's bytes in pieces, its images read from the source a bounded batch at a time."""
    written = 0
    for chunk in pack_chunks(_read_members(source, images)):
        written += len(chunk)
        yield chunk
    if written != length:
        raise AssertionError(f"a shard's length follows from its images' sizes: {written} != {length}")


def _read_members(source: Source, images: Sequence[DistinctImage]) -> Iterator[tuple[str, bytes]]:
    """A shard's members, read from the source in bounded batches, each checked against the hash the scan saw."""
    for batch in bounded_batches(images, READ_BATCH_IMAGES, READ_BATCH_BYTES, lambda image: image.facts.size):
        contents = source.read([image.file for image in batch])
        for image, data in zip(batch, contents, strict=True):
            if hashlib.sha256(data).hexdigest() != image.facts.sha256:
                raise DatasetImportError(f"{image.file!r} changed during the import: import again")
            yield member_name(image.facts.sha256, image.facts.extension), data
        del contents, data  # before the next batch is read: one batch in memory, not two


def _point_latest(storage: Storage, name: str, version: str) -> None:
    """Make ``version`` the dataset's latest, unless it already is (nothing is rewritten)."""
    key = latest_key(name)
    latest = LatestVersion(version=version)
    if storage.exists(key) and LatestVersion.model_validate(storage.read_json(key)) == latest:
        return
    storage.write_json(key, latest.to_json())
