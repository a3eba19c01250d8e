"""An import cut into slices: each slice validates and packs its own files; a merge makes the version.

Slice k (of N) scans only the files ``slice_of`` gives it, keeps each of its
distinct images once, packs them into its own staged shards and then writes its
table of files (where each packed image lies) last: the slice's completion
marker. A slice that finds its marker has nothing to do, and one restarted
midway skips the shards already whole. The merge (slice 0, once every marker is
there) decides exact duplicates across slices, the split, the content address
and the report from the slices' columns, copies the staged shards into the
version (a server-side copy on S3) and writes the index last. An interrupted
import leaves no index, so nothing reads as complete; the staging area goes
once the version is complete.

Where each slice runs is the caller's: in a cluster, pod k of an Indexed Job
(``import_as_pod``); locally, one process per slice (``import_in_processes``).
The same images, in any order and cut into any number of slices, give the same
version (its shards may differ: an image named in two slices is packed twice,
one copy indexed).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autovision.contract.files import DATASET_FORMAT, ShardFacts
from autovision.contract.keys import (
    import_slice_files_key,
    import_slice_shard_key,
    import_slices_prefix,
    index_key,
    shard_key,
)
from autovision.data.curate import Findings
from autovision.data.importer import (
    Decision,
    ImportResult,
    Progress,
    Scanned,
    Survey,
    decide,
    file_chunks,
    point_latest,
    scan_source,
    source_bytes,
    write_shards,
    write_version,
)
from autovision.data.inspection import available_cores, decoding_context, inspection_pool
from autovision.data.report import LIST_LIMIT
from autovision.data.rules import DatasetImportError, ImportLimits, check_dataset_name
from autovision.data.scan_table import ScanFiles
from autovision.data.shards import SHARD_BYTES, plan_shards
from autovision.data.sources import open_source
from autovision.data.split import SplitSettings
from autovision.progress import Reporter
from autovision.resources import Task
from autovision.storage import Storage, object_sizes

# How often the merge looks for slices still running.
WAIT_POLL_S = 2.0
# The slices' files tables' schema metadata key holding what the slice found besides its files.
SLICE_METADATA = b"autovision-slice"
# A source of more bytes than this is cut into slices by default (one per core at most) when imported locally.
SLICE_SOURCE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class SlicedImport:
    """What every slice and the merge of one import agree on (the same arguments on every pod)."""

    source: str
    name: str
    slices: int
    task: Task = Task.SINGLE_LABEL
    split: SplitSettings = field(default_factory=SplitSettings)
    limits: ImportLimits | None = None
    shard_bytes: int = SHARD_BYTES

    @property
    def run(self) -> str:
        """The staging area's name: the same for every slice and every restart of one import."""
        what = f"{DATASET_FORMAT}\n{self.source}\n{self.task.value}\n{self.slices}\n{self.shard_bytes}"
        return hashlib.sha256(what.encode()).hexdigest()[:16]


def default_slices(source: str, storage: Storage) -> int:
    """Slices for a local import of ``source``: one per ``SLICE_SOURCE_BYTES`` of a zip or CSV, at most one per
    core; 1 for a prefix (its size is not known without listing it)."""
    size = source_bytes(source, storage)
    return max(1, min(available_cores(), -(-size // SLICE_SOURCE_BYTES)))


def import_slice(job: SlicedImport, index: int, storage: Storage, reporter: Reporter | None = None) -> None:
    """Validate and pack slice ``index`` into its staged shards, then write its files table (its marker)."""
    check_dataset_name(job.name)
    marker = import_slice_files_key(job.name, job.run, index)
    if storage.exists(marker):
        return
    limits = job.limits or ImportLimits.from_image_limits(storage.settings.image_limits())
    progress = Progress(reporter)
    with (
        # Entered in order: the decoding processes start before the source's listing is read.
        inspection_pool(source_bytes(job.source, storage)) as pool,
        open_source(job.source, storage.settings, limits, job.task is Task.MULTI_LABEL) as opened,
        tempfile.TemporaryDirectory(prefix="autovision-import-") as work,
    ):
        opened.part = (index, job.slices)
        scan_path = Path(work) / "scan.parquet"
        scanned = scan_source(opened, limits, progress, scan_path, pool)
        files = ScanFiles([scan_path]).table()
        # The slice's distinct images, each packed once: the first of each sha256's files by name.
        first = pc.sort_indices(files, sort_keys=[("sha256", "ascending"), ("file", "ascending")]).to_numpy()
        sha256 = files.column("sha256").take(pa.array(first)).combine_chunks()
        starts = np.ones(len(first), dtype=bool)
        if len(first) > 1:
            starts[1:] = pc.not_equal(sha256.slice(1), sha256.slice(0, len(first) - 1)).to_numpy(zero_copy_only=False)
        packed = files.take(pa.array(first[starts]))
        plan = plan_shards(packed.column("size").to_numpy(), job.shard_bytes)
        keys = [import_slice_shard_key(job.name, job.run, index, number) for number in range(len(plan.lengths))]
        shards = write_shards(opened, storage, keys, images=packed, plan=plan, progress=progress)
        shard = np.full(files.num_rows, -1, dtype=np.int32)
        offset = np.zeros(files.num_rows, dtype=np.int64)
        shard[first[starts]], offset[first[starts]] = plan.shards, plan.offsets
        table = files.append_column("shard", pa.array(shard)).append_column("offset", pa.array(offset))
        facts = {
            "shards": [facts.to_json() for facts in shards],
            "rejects": scanned.rejects.examples,
            "rejected": scanned.rejects.count,
            "reasons": scanned.reasons,
            "ignored": opened.ignored,
        }
        path = Path(work) / "files.parquet"
        pq.write_table(table.replace_schema_metadata({SLICE_METADATA: json.dumps(facts).encode()}), path)
        storage.write_stream(marker, lambda: file_chunks(path))


def merge_slices(job: SlicedImport, storage: Storage, reporter: Reporter | None = None) -> ImportResult:
    """Wait for every slice's marker, then make the version from them; the staging area goes at the end."""
    progress = Progress(reporter)
    markers = [import_slice_files_key(job.name, job.run, index) for index in range(job.slices)]
    progress.stage(f"Waiting for {job.slices} slices", job.slices)
    while (done := sum(storage.exists(marker) for marker in markers)) < job.slices:
        progress.update(done, f"{done} of {job.slices} slices packed")
        time.sleep(WAIT_POLL_S)
    progress.stage("Merging slices", None)
    with tempfile.TemporaryDirectory(prefix="autovision-import-") as work:
        paths, found = [], []
        for index, marker in enumerate(markers):
            path = Path(work) / f"slice-{index}.parquet"
            with path.open("wb") as handle:
                handle.write(storage.read_bytes(marker))
            paths.append(path)
            found.append(json.loads((pq.read_schema(path).metadata or {})[SLICE_METADATA]))
        files = ScanFiles(paths, numbered="slice")
        scanned = _scanned(found, files.num_rows)
        decision = decide(files, _survey(job, found), scanned)
        version = decision.version
        reused = storage.exists(index_key(job.name, version))
        if not reused:
            staged = [[ShardFacts.model_validate(facts) for facts in slice_found["shards"]] for slice_found in found]
            shards, facts = _copy_shards(storage, job, decision, staged)
            offsets = decision.images.column("offset").to_numpy()
            write_version(storage, decision, shards=shards, offsets=offsets, facts=facts, work=Path(work))
    point_latest(storage, job.name, version)
    storage.delete_prefix(import_slices_prefix(job.name, job.run))
    return ImportResult(name=job.name, version=version, report=decision.report, reused=reused, storage=storage)


def import_as_pod(
    job: SlicedImport, index: int, storage: Storage, reporter: Reporter | None = None
) -> ImportResult | None:
    """Pod ``index`` of an Indexed Job: pack its slice; pod 0 then merges (the version), the others return None."""
    if not 0 <= index < job.slices:
        raise DatasetImportError(f"slice {index} of an import cut into {job.slices} slices does not exist")
    import_slice(job, index, storage, reporter)
    return merge_slices(job, storage, reporter) if index == 0 else None


def import_in_processes(job: SlicedImport, storage: Storage, reporter: Reporter | None = None) -> ImportResult:
    """The sliced import on this machine: one process per slice (each on its share of the cores), then the merge
    here. A slice's refusal or failure fails the import with its message."""
    context = decoding_context()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    running = []
    for index in range(job.slices):
        receiver, sender = context.Pipe(duplex=False)
        share = cores[index % len(cores) :: job.slices] if cores else []
        # Every concrete context (fork, spawn) has Process; BaseContext's type does not say so.
        process = context.Process(target=_run_slice, args=(job, index, storage, share or cores, sender))  # type: ignore[attr-defined]
        process.start()
        sender.close()
        running.append((process, receiver))
    progress = Progress(reporter)
    progress.stage(f"Checking {job.source} in {job.slices} slices", job.slices)
    try:
        failures = []
        for done, (process, receiver) in enumerate(running, start=1):
            failure = _outcome(receiver)
            process.join()
            if failure or process.exitcode:
                failures.append(failure or f"a slice's process ended with status {process.exitcode}")
            progress.update(done, f"{done} of {job.slices} slices packed")
    finally:
        for process, _ in running:
            if process.is_alive():
                process.kill()
    if failures:
        raise DatasetImportError(failures[0])
    return merge_slices(job, storage, reporter)


def _run_slice(job: SlicedImport, index: int, storage: Storage, cores: list[int], sender: Connection) -> None:
    """A slice's process: packs the slice on its cores and sends back "" or why it failed."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    try:
        # Its own connections: s3fs refuses to be used across a fork.
        import_slice(job, index, type(storage)(storage.uri(""), storage.settings))
    except Exception as error:  # noqa: BLE001 (any failure is the import's, reported by the parent)
        sender.send(str(error) if isinstance(error, DatasetImportError) else f"{type(error).__name__}: {error}")
    else:
        sender.send("")
    finally:
        sender.close()


def _outcome(receiver: Connection) -> str:
    """What a slice's process sent: "" when it packed its slice, why not otherwise ("" too if it died
    without a word: its exit status tells)."""
    try:
        return str(receiver.recv())
    except EOFError:
        return ""


def _survey(job: SlicedImport, found: list[dict[str, Any]]) -> Survey:
    """What the version is made of: every slice sees the whole source's ignored files, so slice 0's count."""
    return Survey(job.name, job.task, job.split, job.source, int(found[0]["ignored"]))


def _scanned(found: list[dict[str, Any]], valid: int) -> Scanned:
    """The slices' rejections together: counts summed, examples in slice order up to ``LIST_LIMIT``."""
    rejects = Findings(LIST_LIMIT)
    reasons: dict[str, int] = {}
    for slice_found in found:
        for example in slice_found["rejects"]:
            rejects.add(example)
        rejects.count += slice_found["rejected"] - len(slice_found["rejects"])
        for reason, count in slice_found["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + count
    return Scanned(rejects, reasons, valid)


def _copy_shards(
    storage: Storage, job: SlicedImport, decision: Decision, staged: list[list[ShardFacts]]
) -> tuple[npt.NDArray[np.int32], list[ShardFacts]]:
    """Copy every slice's staged shards into the version, numbered slice after slice (those already whole are
    skipped); returns each image's shard number in the version and the version's shard facts."""
    first = np.cumsum([0, *(len(shards) for shards in staged)])
    shards = (first[decision.images.column("slice").to_numpy()] + decision.images.column("shard").to_numpy()).astype(
        np.int32
    )
    counts = np.bincount(shards, minlength=int(first[-1])).tolist()
    targets = [shard_key(job.name, decision.version, number) for number in range(int(first[-1]))]
    present = object_sizes([storage.uri(key) for key in targets], storage.settings)
    facts = []
    for index, slice_shards in enumerate(staged):
        for staged_facts in slice_shards:
            number = int(first[index]) + staged_facts.number
            if present[number] != staged_facts.size:
                storage.copy(import_slice_shard_key(job.name, job.run, index, staged_facts.number), targets[number])
            facts.append(ShardFacts(number=number, size=staged_facts.size, images=counts[number]))
    return shards, facts
