"""Benchmark: import CIFAR-10 (60,000 JPEGs, fixed split folders) and report images/s and peak memory.

    .venv/bin/python benchmarks/import_cifar10.py [--zip PATH] [--embedded-s3] [--slices N] [--tracemalloc]

Any zip the importer reads works as ``--zip``: ``benchmarks/synthetic_dataset.py``
writes one of N images.

Runs the real importer into a fresh temporary storage (file://, or an embedded
SeaweedFS S3 with ``--embedded-s3``), then imports again to time the re-import
(validation only; nothing is written). Peak memory of the whole import is
sampled from ``/proc`` every ``SAMPLE_S`` seconds during the first import: the
resident (RSS) and proportional (PSS) set sizes summed over this process and
all its descendants (the importer's decoding workers, slice processes), SeaweedFS
(``weed``) excluded: the S3 server is not AutoVision's. RSS counts pages shared
between a parent and its forked children once per process, so its sum is an
upper bound; PSS divides them. ``--tracemalloc`` adds the peak of Python
allocations during the first import, at a cost in speed. glibc's mmap threshold
is fixed first, as every ``autovision`` command fixes it (``autovision.malloc``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import StageClock, cpu_model

from autovision.data.importer import import_dataset
from autovision.data.inspection import available_cores
from autovision.data.slices import SlicedImport, import_in_processes
from autovision.embedded_s3 import EmbeddedS3
from autovision.malloc import release_large_buffers
from autovision.storage import Storage

SAMPLE_S = 0.25
# Processes not AutoVision's, left out of the sums (the embedded S3 server).
NOT_OURS = ("weed",)
DEFAULT_ZIP = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10.zip"


@contextmanager
def benchmark_storage(embedded_s3: bool) -> Iterator[Storage]:
    """A fresh, empty storage that disappears afterwards."""
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as folder:
        if not embedded_s3:
            yield Storage(f"file://{folder}/storage")
            return
        with EmbeddedS3(Path(folder) / "seaweedfs") as s3:
            yield Storage.from_settings(s3.settings(prefix="bench"))


def _children_of() -> dict[int, list[int]]:
    """Every process's children, from /proc (pid -> child pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB, (0, 0) for one not ours or already gone."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() in NOT_OURS:
            return 0, 0
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except (OSError, ValueError):
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def tree_memory_kib(root: int) -> tuple[int, int]:
    """(RSS, PSS) summed over ``root`` and all its descendants, SeaweedFS apart."""
    children = _children_of()
    pending, rss, pss = [root], 0, 0
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        process_rss, process_pss = _memory_kib(pid)
        rss, pss = rss + process_rss, pss + process_pss
    return rss, pss


class TreeMemorySampler:
    """Samples this process tree's summed RSS and PSS in a thread, keeping the peaks (a context manager)."""

    def __init__(self) -> None:
        self.peak_rss_kib = 0
        self.peak_pss_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            rss, pss = tree_memory_kib(os.getpid())
            self.peak_rss_kib = max(self.peak_rss_kib, rss)
            self.peak_pss_kib = max(self.peak_pss_kib, pss)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Timing:
    """One import's outcome and timings (the records themselves are not kept)."""

    version: str
    images: int
    reused: bool
    seconds: float
    stages: dict[str, float]
    peak_rss_mib: int
    peak_tree_rss_mib: int
    peak_tree_pss_mib: int


def timed_import(source: Path, storage: Storage, slices: int = 1) -> Timing:
    """One import with its wall time, per-stage seconds, the process's peak RSS so far and the process tree's
    peak summed RSS and PSS during it."""
    clock = StageClock()
    start = time.perf_counter()
    with TreeMemorySampler() as sampler:
        if slices > 1:
            result = import_in_processes(SlicedImport(str(source), "benchmark", slices), storage, clock)
        else:
            result = import_dataset(str(source), "benchmark", storage, reporter=clock)
    end = time.perf_counter()
    return Timing(
        version=result.version,
        images=result.report["kept"],
        reused=result.reused,
        seconds=end - start,
        stages={title.split(maxsplit=1)[0].lower(): seconds for title, seconds in clock.durations(end).items()},
        peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        peak_tree_rss_mib=round(sampler.peak_rss_kib / 1024),
        peak_tree_pss_mib=round(sampler.peak_pss_kib / 1024),
    )


def main() -> None:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zip", type=Path, default=DEFAULT_ZIP, help="cifar10.zip from ../shared/datasets")
    parser.add_argument("--embedded-s3", action="store_true", help="store into an embedded SeaweedFS S3")
    parser.add_argument("--tracemalloc", action="store_true", help="also measure the peak of Python allocations")
    parser.add_argument("--once", action="store_true", help="skip the timed re-import")
    parser.add_argument("--slices", type=int, default=1, help="import in this many slices, one process each")
    args = parser.parse_args()
    release_large_buffers()  # as every ``autovision`` command does: measure the importer users run
    if args.tracemalloc:
        tracemalloc.start()
    with benchmark_storage(args.embedded_s3) as storage:
        first = timed_import(args.zip, storage, args.slices)
        peak_python = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        again = first if args.once else timed_import(args.zip, storage, args.slices)
    if not args.once and (not again.reused or again.version != first.version):
        raise SystemExit("the re-import did not reuse the version: the import is not deterministic")
    summary: dict[str, Any] = {
        "images": first.images,
        "storage": storage.protocol,
        "slices": args.slices,
        "seconds": round(first.seconds, 2),
        "imagesPerSecond": round(first.images / first.seconds),
        "stageSeconds": first.stages,
        "peakRssMiB": first.peak_rss_mib,
        "peakTreeRssMiB": first.peak_tree_rss_mib,
        "peakTreePssMiB": first.peak_tree_pss_mib,
        "reimportSeconds": round(again.seconds, 2),
        "reimportImagesPerSecond": round(again.images / again.seconds),
        # Every finished child: the importer's workers, and SeaweedFS with --embedded-s3.
        "peakChildRssMiB": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "cores": available_cores(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
    }
    if args.tracemalloc:
        summary["peakPythonAllocationsMiB"] = round(peak_python / 2**20)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
