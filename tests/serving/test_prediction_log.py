"""The prediction log on its own: sampling, the bounded buffer, shards that read back whole, a storage that fails.

The gateway's use of it (every dialect logs, a stopped storage never fails a request)
is tested with real Triton in test_gateway.py and test_google_grpc.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import socket
import time
from collections.abc import Iterator

import pytest

from autovision.contract.keys import logged_image_key
from autovision.serving.client import Prediction
from autovision.serving.prediction_log import (
    LOGGED_TOP_K,
    METRICS_PREFIX,
    LogSettings,
    PredictionLog,
    check_rate,
    decode_shard,
    encode_shard,
    logged_prediction,
    read_log,
    sampled,
    shard_location,
)
from autovision.settings import Settings
from autovision.storage import Storage

NOW = dt.datetime(2026, 12, 4, 16, 30, 5, 123000, tzinfo=dt.UTC)
PREDICTIONS = [Prediction(label=f"l{index}", score=index / 10, index=index) for index in range(7)]


def settings_for(storage: Storage, **bounds: float | int | bool) -> LogSettings:
    """A log at rate 1 into ``storage``'s root, for deployment ``flowers`` of namespace ``ml``."""
    settings = storage.settings.model_copy(update={"storage_root": storage.uri("")})
    return LogSettings(rate=1.0, storage=settings, namespace="ml", deployment="flowers", **bounds)  # type: ignore[arg-type]


def counts(log: PredictionLog) -> dict[str, float]:
    """The log's counters, as Prometheus reads them from its registry."""
    registry = log.metrics.registry
    names = ("logged", "dropped", "shards_written", "write_failures")
    return {name: registry.get_sample_value(f"{METRICS_PREFIX}_{name}_total") or 0.0 for name in names}


def test_sampling_and_rates() -> None:
    assert not sampled(0.0, 0.0)
    assert sampled(1.0, 0.999)
    assert [sampled(0.1, draw) for draw in (0.05, 0.1, 0.5)] == [True, False, False]
    for rate in (-0.1, 1.5):
        with pytest.raises(ValueError, match="from 0 to 1"):
            check_rate(rate)
    with pytest.raises(ValueError, match="from 0 to 1"):
        LogSettings(rate=2.0, storage=Settings(), namespace="local", deployment="d")
    assert not PredictionLog(None).sample()


def test_a_record_keeps_the_top_labels_and_the_shard_key_its_time() -> None:
    record = logged_prediction(b"img", "flowers", "run-a", PREDICTIONS, 12.34567, [0.5, 1], True, NOW)
    assert record.sha256 == hashlib.sha256(b"img").hexdigest()
    assert [item.label for item in record.top] == ["l6", "l5", "l4", "l3", "l2"][:LOGGED_TOP_K]
    assert (record.time, record.latency_ms, record.embedding) == ("2026-12-04T16:30:05.123+00:00", 12.346, [0.5, 1.0])
    assert shard_location("predictions/ml/flowers", NOW, "abc") == "predictions/ml/flowers/2026-12-04/163005-abc.jsonl"
    assert decode_shard(encode_shard([record, record])) == [record, record]


def test_a_full_buffer_drops_and_counts(file_storage: Storage) -> None:
    log = PredictionLog(settings_for(file_storage, buffer_records=3))
    taken = [log.record(b"x", "run", PREDICTIONS, 1.0) for _ in range(5)]
    assert taken == [True, True, True, False, False]
    assert counts(log) == {"logged": 3, "dropped": 2, "shards_written": 0, "write_failures": 0}

    by_bytes = PredictionLog(settings_for(file_storage, images=True, buffer_bytes=10))
    assert [by_bytes.record(image, "run", PREDICTIONS, 1.0) for image in (b"123456", b"1234", b"1")] == [
        True,
        True,
        False,
    ]
    assert counts(by_bytes)["dropped"] == 1


def test_shards_read_back_complete_and_images_are_stored_once(storage: Storage) -> None:
    """Every record buffered is in exactly one shard, every line a valid LoggedPrediction; images by sha256."""
    images = [f"image {index % 4}".encode() for index in range(10)]

    async def scenario() -> PredictionLog:
        log = PredictionLog(settings_for(storage, images=True, shard_records=4, flush_seconds=0.05))
        log.start()
        for image in images[:6]:
            assert log.record(image, "run-a", PREDICTIONS, 3.0, [0.1, 0.2])
        await asyncio.sleep(0.5)  # the writer takes the buffer: one full shard, then the rest on its timer
        for image in images[6:]:
            log.record(image, "run-b", PREDICTIONS, 3.0)
        await log.close()  # the last ones on shutdown
        return log

    log = asyncio.run(scenario())
    prefix = "predictions/ml/flowers"
    shards = [key for key in storage.list_keys(prefix) if key.endswith(".jsonl")]
    records = read_log(storage, prefix)
    assert len(records) == len(images)  # every line was validated as a LoggedPrediction
    assert sorted(record.sha256 for record in records) == sorted(hashlib.sha256(i).hexdigest() for i in images)
    assert {record.model for record in records} == {"run-a", "run-b"}
    assert all(record.image_stored and record.deployment == "flowers" for record in records)
    for image in set(images):
        assert storage.read_bytes(logged_image_key(prefix, hashlib.sha256(image).hexdigest())) == image
    assert len(storage.list_keys(f"{prefix}/images")) == len(set(images))
    assert counts(log) == {"logged": 10, "dropped": 0, "shards_written": len(shards), "write_failures": 0}
    assert len(shards) >= 3


@pytest.fixture
def silent_s3() -> Iterator[Settings]:
    """An S3 endpoint that accepts connections and never answers: the slowest storage there is."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield Settings(
            storage_root="s3://bucket/root",
            s3_endpoint_url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            s3_access_key_id="key",
            s3_secret_access_key="secret",
        )


def test_a_storage_that_never_answers_costs_shards_not_the_event_loop(silent_s3: Settings) -> None:
    """Each shard waits at most the write timeout; one still hanging makes the next ones count as lost at once."""

    async def scenario() -> tuple[PredictionLog, float, float]:
        settings = LogSettings(
            rate=1.0, storage=silent_s3, namespace="ml", deployment="d", shard_records=2, write_timeout_s=2.0
        )
        log = PredictionLog(settings)
        log.start()
        stalls = []
        started = time.monotonic()
        for _ in range(20):
            before = time.monotonic()
            log.record(b"x", "run", PREDICTIONS, 1.0)
            await asyncio.sleep(0.05)
            stalls.append(time.monotonic() - before)
        await log.close()
        return log, max(stalls), time.monotonic() - started

    log, worst_stall, elapsed = asyncio.run(scenario())
    result = counts(log)
    assert result["shards_written"] == 0
    assert result["write_failures"] >= 2, "shards wait for no write that hangs"
    assert result["logged"] == 20
    assert worst_stall < 1.0, "the event loop waited for storage"
    assert elapsed < 8, "closing waited more than one write timeout, or the loop waited for storage"
