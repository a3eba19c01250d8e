"""Validate a source's images on every core: decoding dominates an import's time, and it is pure.

Small imports (the quickstart's digits) never start a process. Past
``INLINE_FILES`` files the rest goes to a process pool in batches, with a bounded
number of batches in flight, so memory holds a few batches of images however
large the source is. Results come back in source order, so imports stay
deterministic. For a large source the pool is started before the source is
opened (``inspection_pool``): forked later, each worker would map, and count in
its resident size, the source's listing (a million-entry zip directory is about
100 MB).
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from PIL import Image

from autovision.data.batching import bounded_batches, map_in_order
from autovision.data.rules import ImportLimits, Rejection
from autovision.data.sources import Offer, Scanned
from autovision.data.validate import ImageFacts, inspect_image

INLINE_FILES = 2000
MAX_WORKERS = 8
BATCH_FILES = 64
BATCH_BYTES = 16 * 1024 * 1024
# Sources of at least this many bytes get their decoding pool before they are opened.
EARLY_POOL_BYTES = 8 * 1024 * 1024

Inspected = tuple[Offer, ImageFacts | Rejection] | Rejection


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def inspect_batch(batch: Sequence[Scanned], limits: ImportLimits) -> list[ImageFacts | Rejection]:
    """The facts (or rejection) of each offer in a batch; runs in a worker process."""
    return [inspect_image(item.file, item.data, limits) for item in batch if isinstance(item, Offer)]


def decoding_workers() -> int:
    """Processes a decoding pool gets here: one per core, at most ``MAX_WORKERS``."""
    return min(available_cores(), MAX_WORKERS)


@contextmanager
def inspection_pool(source_bytes: int) -> Iterator[ProcessPoolExecutor | None]:
    """A decoding pool whose processes are started now, while this process is still small, when a source of
    ``source_bytes`` is large enough to need one (and there are cores for it); None otherwise."""
    workers = decoding_workers()
    if source_bytes < EARLY_POOL_BYTES or workers < 2:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=decoding_context()) as pool:
        pool.submit(int).result()  # forks every worker now (a fork context starts them all at once)
        yield pool


def inspect_all(
    scanned: Iterable[Scanned], limits: ImportLimits, pool: ProcessPoolExecutor | None = None
) -> Iterator[Inspected]:
    """Each offer with its facts (or rejection), rejections passed through, in source order; past
    ``INLINE_FILES`` on ``pool``, or on a pool started then."""
    items = iter(scanned)
    yield from _inline(itertools.islice(items, INLINE_FILES), limits)
    following = next(items, None)
    if following is None:
        return
    rest = itertools.chain([following], items)
    workers = decoding_workers()
    if pool is not None:
        yield from _in_pool(pool, rest, limits, window=2 * workers)
    elif workers < 2:
        yield from _inline(rest, limits)
    else:
        with ProcessPoolExecutor(workers, mp_context=decoding_context()) as started:
            yield from _in_pool(started, rest, limits, window=2 * workers)


def decoding_context() -> multiprocessing.context.BaseContext:
    """How decoding pools (the importer's, the trainer's image cache) start processes.

    fork on Linux: spawn and forkserver children re-run the caller's ``__main__``
    (a script without a main guard runs again; a script read from stdin breaks the
    pool). Forked children only decode with Pillow and numpy; CPython resets the
    import lock and the GIL after fork, and every Pillow plugin is loaded before the
    fork, so a thread of the parent (s3fs's event loop, rich's refresh) holding a
    lock cannot stall them. Other platforms use their default, spawn.
    """
    if sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    Image.init()
    return multiprocessing.get_context("fork")


def _inline(items: Iterable[Scanned], limits: ImportLimits) -> Iterator[Inspected]:
    for item in items:
        yield item if isinstance(item, Rejection) else (item, inspect_image(item.file, item.data, limits))


def _in_pool(
    pool: ProcessPoolExecutor, items: Iterator[Scanned], limits: ImportLimits, window: int
) -> Iterator[Inspected]:
    batches = bounded_batches(items, BATCH_FILES, BATCH_BYTES, _size)
    for batch, facts in map_in_order(pool, functools.partial(inspect_batch, limits=limits), batches, window):
        results = iter(facts)
        for item in batch:
            yield item if isinstance(item, Rejection) else (item, next(results))


def _size(item: Scanned) -> int:
    return len(item.data) if isinstance(item, Offer) else 0
