"""Bounded streaming helpers: batches limited in count and bytes, and pool work with a
limited number of batches in flight, so memory stays flat whatever the source's size."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded_batches(items: Iterable[T], max_items: int, max_bytes: int, size: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive batches of at most ``max_items`` items and ``max_bytes`` bytes
    (a single larger item still forms a batch of its own)."""
    batch: list[T] = []
    total = 0
    for item in items:
        if batch and (len(batch) == max_items or total + size(item) > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += size(item)
    if batch:
        yield batch


def map_in_order(pool: Executor, work: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[tuple[T, R]]:
    """``work`` over ``items`` on a pool, at most ``window`` in flight, results in input order.

    ``items`` is consumed lazily in the caller's thread, so producing an item (reading
    images) overlaps with the pool working on earlier ones.
    """
    pending: deque[tuple[T, Future[R]]] = deque()
    for item in items:
        pending.append((item, pool.submit(work, item)))
        if len(pending) >= window:
            done, future = pending.popleft()
            yield done, future.result()
    while pending:
        done, future = pending.popleft()
        yield done, future.result()
