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
import posixpath
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from autovision.contract.files import DATASET_FORMAT, DatasetIndexHeader, ImportReportSummary, LatestVersion, ShardFacts
from autovision.contract.keys import index_key, latest_key, report_key, shard_key
from autovision.data.batching import bounded_batches
from autovision.data.curate import SPLIT_NAMES, Columns, Findings, SplitCodes, assign_splits, content_version, curate
from autovision.data.inspection import inspect_all, inspection_pool
from autovision.data.manifest import write_index
from autovision.data.near_duplicates import nearest_earlier
from autovision.data.record_table import RecordTable
from autovision.data.report import LIST_LIMIT, ImportFindings, build_report, check_trainable
from autovision.data.rules import DatasetImportError, ImportLimits, Rejection, check_dataset_name
from autovision.data.scan_table import ScanFiles, ScanTable
from autovision.data.shards import SHARD_BYTES, ShardPlan, member_name, pack_chunks, plan_shards
from autovision.data.sources import Source, open_source
from autovision.data.sources.previous import UnionSource, VersionSource
from autovision.data.split import SplitSettings
from autovision.data.versions import read_version
from autovision.progress import Reporter
from autovision.resources import Task
from autovision.storage import Storage, StorageError, object_sizes, split_uri

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
    """What an import produced: the version and its report (its records are read back from storage on demand)."""

    name: str
    version: str
    report: dict[str, Any]
    reused: bool = False
    storage: Storage | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def records(self) -> RecordTable:
        """The version's records, read from its index as columns (``RecordTable``)."""
        if self.storage is None:
            raise ValueError("an ImportResult made without its storage has no records to read")
        return read_version(self.storage, self.name, self.version)


class Member(NamedTuple):
    """One image to pack into a shard: where the source has it, and what the scan saw."""

    file: str
    sha256: str
    extension: str
    size: int


class Progress:
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
    progress = Progress(reporter)
    multi_label = task is Task.MULTI_LABEL
    previous = _previous_version(source, name, storage, task) if add_to_previous else None
    with (
        # Entered in order: the decoding processes start before the source's listing is read.
        inspection_pool(source_bytes(source, storage)) as pool,
        _open(source, storage, limits, multi_label, previous) as opened,
        tempfile.TemporaryDirectory(prefix="autovision-import-") as work,
    ):
        scan_path = Path(work) / "scan.parquet"
        scanned = scan_source(opened, limits, progress, scan_path, pool)
        decision = decide(
            ScanFiles([scan_path]),
            Survey(name, task, split, opened.description if previous is not None else source, opened.ignored),
            scanned,
        )
        version = decision.version
        # Packed in the order of their hashes: the same images give the same shards, whatever the source's order.
        plan = plan_shards(decision.images.column("size").to_numpy(), shard_bytes)
        reused = storage.exists(index_key(name, version))
        if not reused:
            keys = [shard_key(name, version, number) for number in range(len(plan.lengths))]
            shards = write_shards(opened, storage, keys, images=decision.images, plan=plan, progress=progress)
            write_version(storage, decision, shards=plan.shards, offsets=plan.offsets, facts=shards, work=Path(work))
    point_latest(storage, name, version)
    return ImportResult(name=name, version=version, report=decision.report, reused=reused, storage=storage)


def _open(
    source: str, storage: Storage, limits: ImportLimits, multi_label: bool, previous: VersionSource | None
) -> Source:
    """The source to scan: ``source`` itself, or the previous version followed by it."""
    opened = open_source(source, storage.settings, limits, multi_label)
    return opened if previous is None else UnionSource(previous, opened)


def source_bytes(source: str, storage: Storage) -> int:
    """The size of a zip or CSV source in bytes; 0 for a prefix, or where it cannot be known before opening."""
    if split_uri(source)[0] not in storage.settings.import_uri_schemes:
        return 0  # refused when opened, with its message
    return object_sizes([source], storage.settings)[0] or 0


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


@dataclass(frozen=True)
class Survey:
    """What a version is being made of, besides its files: its name, task, split settings, source and the
    source's silently ignored files."""

    name: str
    task: Task
    split: SplitSettings
    source: str
    ignored: int


@dataclass(frozen=True)
class Scanned:
    """What a scan found besides the valid files: rejections (counted, the first ``LIST_LIMIT`` kept), their count
    per reason, and how many files passed."""

    rejects: Findings
    reasons: dict[str, int]
    valid: int


@dataclass(frozen=True)
class Decision:
    """A version decided from its scan's columns: its distinct images (sorted by sha256), their splits, its
    content address and its report; nothing written yet."""

    name: str
    images: pa.Table
    codes: SplitCodes
    version: str
    report: dict[str, Any]


def scan_source(
    source: Source, limits: ImportLimits, progress: Progress, path: Path, pool: ProcessPoolExecutor | None
) -> Scanned:
    """Pass 1: validate every file the source offers into a scan table at ``path``, decoding on ``pool`` if
    given (``inspection.inspection_pool``), which is shut down at the end: its workers' memory goes before the
    columns are sorted."""
    rejects = Findings(LIST_LIMIT)
    reasons: Counter[str] = Counter()
    progress.stage(f"Checking {source.description}", source.total)
    with closing(ScanTable(path)) as table:
        for inspected in inspect_all(source.scan(), limits, pool):
            if isinstance(inspected, Rejection):
                rejection = inspected
            else:
                offer, facts = inspected
                if isinstance(facts, Rejection):
                    rejection = Rejection(facts.file, facts.reason, facts.message, offer.line)
                else:
                    table.append(offer.file, offer.labels, offer.split, facts)
                    progress.update(source.position, f"{table.rows} images, {rejects.count} rejected")
                    continue
            rejects.add(rejection.as_json())
            reasons[rejection.reason.value] += 1
            progress.update(source.position, f"{table.rows} images, {rejects.count} rejected")
    progress.update(source.position, f"{table.rows} images, {rejects.count} rejected", force=True)
    if pool is not None:
        pool.shutdown()
    return Scanned(rejects, dict(reasons), table.rows)


def decide(scan: Columns, survey: Survey, scanned: Scanned) -> Decision:
    """Dedupe, split, address and report a version from its scan's columns (extra columns, such as where a slice
    packed each image, are carried along to the distinct images); DatasetImportError when it is untrainable."""
    curated = curate(scan, survey.task is Task.MULTI_LABEL, LIST_LIMIT)
    del scan
    images = curated.images
    codes, carved = assign_splits(images, survey.split)
    version = content_version(survey.task.value, images, codes)
    findings = ImportFindings(
        name=survey.name,
        version=version,
        task=survey.task.value,
        source=survey.source,
        total=scanned.valid + scanned.rejects.count,
        ignored=survey.ignored,
        rejects=scanned.rejects,
        reject_reasons=scanned.reasons,
        curated=curated,
        near_duplicates=_near_duplicates(images),
        taken_from_train=carved,
        split_codes=codes,
    )
    report = build_report(findings)
    check_trainable(report)
    return Decision(survey.name, images, codes, version, report)


def write_version(
    storage: Storage,
    decision: Decision,
    *,
    shards: npt.NDArray[np.int32],
    offsets: npt.NDArray[np.int64],
    facts: list[ShardFacts],
    work: Path,
) -> None:
    """Write a version's report, then its index (the completion marker), once every shard is whole."""
    storage.write_json(report_key(decision.name, decision.version), decision.report)
    header = DatasetIndexHeader(format_version=DATASET_FORMAT, shards=facts)
    index_path = work / "index.parquet"
    write_index(index_path, _index_columns(decision.images, decision.codes, shards, offsets), header)
    storage.write_stream(index_key(decision.name, decision.version), functools.partial(file_chunks, index_path))


def _near_duplicates(images: pa.Table) -> Findings:
    """Images that look like an earlier one (in the order of their file names), counted, the first shown."""
    by_file = pc.sort_indices(images.column("file")).to_numpy()
    index, similar_to, distance = nearest_earlier(images.column("dhash").to_numpy()[by_file])
    findings = Findings(LIST_LIMIT)
    files = images.column("file")
    shown = slice(0, LIST_LIMIT)
    for file, similar, apart in zip(
        files.take(pa.array(by_file[index[shown]])).to_pylist(),
        files.take(pa.array(by_file[similar_to[shown]])).to_pylist(),
        distance[shown].tolist(),
        strict=True,
    ):
        findings.add({"file": file, "similarTo": similar, "distance": apart})
    findings.count = len(index)
    return findings


def _index_columns(
    images: pa.Table, codes: SplitCodes, shards: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64]
) -> pa.Table:
    """The index's columns: each distinct image (in the order of their hashes) with its split and place."""
    return pa.table(
        {
            "sha256": images.column("sha256"),
            "labels": images.column("labels"),
            "split": pa.DictionaryArray.from_arrays(pa.array(codes, pa.int8()), pa.array(SPLIT_NAMES)),
            "width": images.column("width"),
            "height": images.column("height"),
            "source": images.column("file"),
            "shard": pa.array(shards, pa.int32()),
            "offset": pa.array(offsets, pa.int64()),
            "size": images.column("size"),
        }
    )


def file_chunks(path: Path) -> Iterator[bytes]:
    """A local file's bytes in pieces of ``READ_BATCH_BYTES``."""
    with path.open("rb") as handle:
        while chunk := handle.read(READ_BATCH_BYTES):
            yield chunk


def write_shards(
    source: Source, storage: Storage, keys: list[str], *, images: pa.Table, plan: ShardPlan, progress: Progress
) -> list[ShardFacts]:
    """Pass 2: pack and write each shard (at ``keys``) not yet written whole (an interrupted import resumes),
    one at a time."""
    present = set(storage.list_keys(posixpath.dirname(keys[0]))) if keys else set()
    sizes = object_sizes([storage.uri(key) for key in keys if key in present], storage.settings)
    written = dict(zip([key for key in keys if key in present], sizes, strict=True))
    progress.stage("Writing shards", images.num_rows)
    bounds = np.searchsorted(plan.shards, np.arange(len(plan.lengths) + 1)).tolist()
    facts: list[ShardFacts] = []
    for number, length in enumerate(plan.lengths):
        start, end = bounds[number], bounds[number + 1]
        if written.get(keys[number]) != length:
            members = _members(images.slice(start, end - start))
            storage.write_stream(keys[number], functools.partial(_shard_chunks, source, members, length))
        facts.append(ShardFacts(number=number, size=length, images=end - start))
        progress.update(end, f"{number + 1} of {len(plan.lengths)} shards")
    progress.update(images.num_rows, f"{len(plan.lengths)} shards", force=True)
    return facts


def _members(images: pa.Table) -> list[Member]:
    """One shard's images as (file, sha256, extension, size): a shard's worth of small tuples."""
    columns = [images.column(column).to_pylist() for column in ("file", "sha256", "extension", "size")]
    return [Member(*row) for row in zip(*columns, strict=True)]


def _shard_chunks(source: Source, members: Sequence[Member], length: int) -> Iterator[bytes]:
    """A shard's bytes in pieces, its images read from the source a bounded batch at a time."""
    written = 0
    for chunk in pack_chunks(_read_members(source, members)):
        written += len(chunk)
        yield chunk
    if written != length:
        raise AssertionError(f"a shard's length follows from its images' sizes: {written} != {length}")


def _read_members(source: Source, members: Sequence[Member]) -> Iterator[tuple[str, bytes]]:
    """A shard's members, read from the source in bounded batches, each checked against the hash the scan saw."""
    for batch in bounded_batches(members, READ_BATCH_IMAGES, READ_BATCH_BYTES, lambda member: member.size):
        contents = source.read([member.file for member in batch])
        for member, data in zip(batch, contents, strict=True):
            if hashlib.sha256(data).hexdigest() != member.sha256:
                raise DatasetImportError(f"{member.file!r} changed during the import: import again")
            yield member_name(member.sha256, member.extension), data
        del contents, data  # before the next batch is read: one batch in memory, not two


def point_latest(storage: Storage, name: str, version: str) -> None:
    """Make ``version`` the dataset's latest, unless it already is (nothing is rewritten)."""
    key = latest_key(name)
    latest = LatestVersion(version=version)
    if storage.exists(key) and LatestVersion.model_validate(storage.read_json(key)) == latest:
        return
    storage.write_json(key, latest.to_json())
