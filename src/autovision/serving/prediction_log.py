"""The gateway's prediction log: a sample of requests, batched into shards in storage, never in a request's way.

A request the sampler picks (``rate``, 0 to 1; 0 logs nothing) becomes one
``LoggedPrediction``: the image's sha256, the model that answered, its top-k, the
latency, the time, and the model's embedding when it exports one. Records go into
a bounded in-memory buffer (``buffer_records`` records, ``buffer_bytes`` bytes of
images): a record that finds it full is dropped and counted, so a request never
waits for the log. A writer task in the gateway's event loop takes the buffer every
``flush_seconds`` (sooner once ``shard_records`` are waiting, and once more on
shutdown) and writes it as JSON Lines shards, each one whole object, through
``autovision.storage.Storage`` in a thread of its own, so the event loop never
blocks on storage. One write at a time, each waited for at most ``write_timeout_s``
(which also bounds its S3 connections, reads and retries): a storage that is down or
slow costs the shards it could not take (counted), never a request's latency or success.
With ``images``, each image is stored once per sha256 under ``images/<sha256>``, before
the shard that names it.

The counters (``logged``, ``dropped``, ``shards written``, ``write failures``) live
in the log's own Prometheus registry, which the gateway serves at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry, Counter

from autovision.contract.files import LoggedLabel, LoggedPrediction
from autovision.contract.keys import logged_image_key, prediction_log_prefix, prediction_shard_key
from autovision.serving.client import Prediction
from autovision.settings import Settings
from autovision.storage import Storage

# The labels a record keeps: enough for a review set's confidence and a drift check's label mix.
LOGGED_TOP_K: Final = 5
# The namespace of ``autovision serve``'s log (a cluster's gateway logs under its ModelDeployment's).
LOCAL_NAMESPACE: Final = "local"
# How many stored images' sha256 the writer remembers, so that a repeated image is stored once.
REMEMBERED_IMAGES: Final = 100_000
METRICS_PREFIX: Final = "autovision_prediction_log"

log = logging.getLogger(__name__)


def sampled(rate: float, draw: float) -> bool:
    """Whether a request whose uniform draw in [0, 1) is ``draw`` is logged at ``rate`` (0 never, 1 always)."""
    return draw < rate


def check_rate(rate: float) -> float:
    """The rate itself, or a ValueError saying that a log rate is a fraction of requests, 0 to 1."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"the prediction log rate is a fraction of requests from 0 to 1, got {rate:g}")
    return rate


def answered_at(now: dt.datetime) -> str:
    """A record's time: UTC, ISO 8601, to the millisecond."""
    return now.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def shard_location(prefix: str, now: dt.datetime, shard_id: str) -> str:
    """The key of a shard written at ``now``: ``<prefix>/<YYYY-MM-DD>/<HHMMSS>-<id>.jsonl`` (UTC)."""
    utc = now.astimezone(dt.UTC)
    return prediction_shard_key(prefix, utc.strftime("%Y-%m-%d"), f"{utc:%H%M%S}-{shard_id}.jsonl")


def encode_shard(records: Sequence[LoggedPrediction]) -> bytes:
    """A shard's bytes: one LoggedPrediction per line (JSON Lines)."""
    return b"".join(record.model_dump_json(by_alias=True).encode() + b"\n" for record in records)


def decode_shard(data: bytes) -> list[LoggedPrediction]:
    """A shard's records, each line validated (a ValidationError names a line that is not one)."""
    return [LoggedPrediction.model_validate_json(line) for line in data.splitlines() if line.strip()]


def read_log(storage: Storage, prefix: str) -> list[LoggedPrediction]:
    """Every record of every shard under a log's prefix (``prediction_log_prefix``), shards in key order (by time)."""
    shards = [key for key in storage.list_keys(prefix) if key.endswith(".jsonl")]
    return [record for key in shards for record in decode_shard(storage.read_bytes(key))]


def logged_prediction(  # noqa: PLR0917 - one record's every field
    image: bytes,
    deployment: str,
    model: str,
    predictions: Sequence[Prediction],
    latency_ms: float,
    embedding: Sequence[float] | None,
    image_stored: bool,
    now: dt.datetime,
) -> LoggedPrediction:
    """The record of one answered image: its top ``LOGGED_TOP_K`` labels, best first, and the rest as given."""
    best = sorted(predictions, key=lambda prediction: -prediction.score)[:LOGGED_TOP_K]
    return LoggedPrediction(
        time=answered_at(now),
        deployment=deployment,
        model=model,
        sha256=hashlib.sha256(image).hexdigest(),
        top=[LoggedLabel(label=p.label, score=float(p.score)) for p in best],
        latency_ms=round(latency_ms, 3),
        embedding=None if embedding is None else [float(value) for value in embedding],
        image_stored=image_stored,
    )


@dataclass(frozen=True)
class LogSettings:
    """What one gateway logs (rate, images), where (storage settings, namespace, deployment) and its bounds."""

    rate: float
    storage: Settings
    namespace: str
    deployment: str
    images: bool = False
    buffer_records: int = 10_000
    buffer_bytes: int = 64 * 1024 * 1024
    shard_records: int = 1_000
    flush_seconds: float = 30.0
    write_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check_rate(self.rate)

    @property
    def prefix(self) -> str:
        """Where the shards and images go: ``predictions/<namespace>/<deployment>``."""
        return prediction_log_prefix(self.namespace, self.deployment)

    def write_storage(self) -> Storage:
        """The storage the writer writes through: its retries, connections and reads end with the write's timeout."""
        settings = self.storage.model_copy(update={"storage_retry_seconds": self.write_timeout_s})
        return Storage(settings.storage_root, settings, timeout_s=self.write_timeout_s)


@dataclass
class LogMetrics:
    """The log's counters, in a registry of their own (one per gateway: tests run several in one process)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        def counter(name: str, text: str) -> Counter:
            return Counter(f"{METRICS_PREFIX}_{name}", text, registry=self.registry)

        self.logged = counter("logged", "Sampled predictions taken into the log's buffer.")
        self.dropped = counter("dropped", "Sampled predictions dropped because the log's buffer was full.")
        self.shards_written = counter("shards_written", "Shards of logged predictions written to storage.")
        self.write_failures = counter(
            "write_failures",
            "Shards not written (storage down, slower than the write timeout, or still busy with the last one); "
            "their predictions are lost.",
        )


@dataclass(frozen=True)
class _Entry:
    record: LoggedPrediction
    image: bytes | None


class PredictionLog:
    """The sampler, the bounded buffer and the writer of one gateway; start() and close() run in its event loop.

    ``record`` is synchronous and never waits: it is called in the event loop after
    the answer is known. With ``settings`` None (logging off) nothing is sampled and
    no writer runs; the counters still exist, at zero.
    """

    def __init__(
        self,
        settings: LogSettings | None,
        draw: Callable[[], float] = random.random,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.settings = settings
        self.metrics = LogMetrics()
        self._draw = draw
        self._clock = clock
        self._buffer: list[_Entry] = []
        self._buffer_bytes = 0
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-log")
        self._writing: asyncio.Future[None] | None = None
        self._stored: set[str] = set()
        self._storage: Storage | None = None

    def sample(self) -> bool:
        """Whether to log the request at hand (one draw per request)."""
        return self.settings is not None and sampled(self.settings.rate, self._draw())

    def record(
        self,
        image: bytes,
        model: str,
        predictions: Sequence[Prediction],
        latency_ms: float,
        embedding: Sequence[float] | None = None,
    ) -> bool:
        """Buffer one sampled answer; False when the buffer is full and it is dropped (and counted)."""
        settings = self.settings
        if settings is None:
            return False
        kept = image if settings.images else None
        size = len(kept) if kept is not None else 0
        if len(self._buffer) >= settings.buffer_records or self._buffer_bytes + size > settings.buffer_bytes:
            self.metrics.dropped.inc()
            return False
        entry = logged_prediction(
            image, settings.deployment, model, predictions, latency_ms, embedding, settings.images, self._clock()
        )
        self._buffer.append(_Entry(entry, kept))
        self._buffer_bytes += size
        self.metrics.logged.inc()
        if len(self._buffer) >= settings.shard_records:
            self._full.set()
        return True

    def start(self) -> None:
        """Start the writer task (none with logging off)."""
        if self.settings is not None:
            self._storage = self.settings.write_storage()
            self._writer = asyncio.create_task(self._write_periodically(self.settings))

    async def close(self) -> None:
        """Let the writer finish its shard and write what the buffer still holds, then stop it.

        A storage that hangs costs the write timeout once: the shards after it are lost at once.
        """
        if self._writer is not None:
            self._closing = True
            self._full.set()
            await self._writer
            self._writer = None
        self._executor.shutdown(wait=False)

    async def flush(self) -> None:
        """Write every buffered record now, ``shard_records`` to a shard."""
        assert self.settings is not None
        taken, self._buffer, self._buffer_bytes = self._buffer, [], 0
        self._full.clear()
        step = self.settings.shard_records
        for start in range(0, len(taken), step):
            await self._write(taken[start : start + step], self.settings.write_timeout_s)

    async def _write_periodically(self, settings: LogSettings) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), settings.flush_seconds)
            await self.flush()
        await self.flush()  # what came in while the last shard was written

    async def _write(self, entries: list[_Entry], timeout_s: float) -> None:
        """One shard, in the writer's thread, waited for at most ``timeout_s``; lost (and counted) at once when
        the last write is still going on.

        A write that outlives its wait goes on in its thread (a thread cannot be stopped) and is counted
        when it ends, written or failed; the storage's own timeouts end it soon after.
        """
        if self._writing is not None and not self._writing.done():
            self.metrics.write_failures.inc()
            log.warning("prediction log: the last shard is still being written; %d records lost", len(entries))
            return
        self._writing = asyncio.get_running_loop().run_in_executor(self._executor, self._write_shard, entries)
        self._writing.add_done_callback(functools.partial(self._count, len(entries)))
        await asyncio.wait({self._writing}, timeout=timeout_s)

    def _count(self, records: int, write: asyncio.Future[None]) -> None:
        """Count a finished write: written, or failed (storage's every failure costs the shard, never the gateway)."""
        error = None if write.cancelled() else write.exception()
        if error is None:
            self.metrics.shards_written.inc()
            return
        self.metrics.write_failures.inc()
        log.warning("prediction log: a shard of %d records is lost (%s: %s)", records, type(error).__name__, error)

    def _write_shard(self, entries: list[_Entry]) -> None:
        """Store the shard's new images, then the shard itself (so a shard never names a missing image)."""
        assert self.settings is not None
        assert self._storage is not None
        prefix = self.settings.prefix
        images = {entry.record.sha256: entry.image for entry in entries if entry.image is not None}
        new = {logged_image_key(prefix, sha): data for sha, data in images.items() if sha not in self._stored}
        if new:
            self._storage.write_many(new)
            if len(self._stored) + len(images) > REMEMBERED_IMAGES:
                self._stored.clear()
            self._stored.update(images)
        key = shard_location(prefix, self._clock(), uuid.uuid4().hex[:16])
        self._storage.write_bytes(key, encode_shard([entry.record for entry in entries]))
