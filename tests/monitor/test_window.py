"""Reading a window of logged predictions back from a deployment's shards."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from autovision.contract.files import LoggedLabel, LoggedPrediction
from autovision.contract.keys import logged_image_key, prediction_log_prefix, prediction_shard_key
from autovision.monitor.window import WindowError, read_window, window_days, window_predictions
from autovision.storage import Storage
from tests.support.drift import write_shards

PREFIX = prediction_log_prefix("default", "flowers")
MIDNIGHT = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


def record(minutes: float, label: str = "rose", embedding: list[float] | None = None) -> LoggedPrediction:
    return LoggedPrediction(
        time=(MIDNIGHT + dt.timedelta(minutes=minutes)).isoformat(),
        deployment="flowers",
        model="run-1",
        sha256="0" * 64,
        top=[LoggedLabel(label=label, score=0.9), LoggedLabel(label="tulip", score=0.1)],
        latency_ms=3.0,
        embedding=embedding,
    )


def test_window_days_span_midnight() -> None:
    assert window_days(MIDNIGHT - dt.timedelta(minutes=5), MIDNIGHT + dt.timedelta(minutes=5)) == [
        "2026-12-03",
        "2026-12-04",
    ]


def test_the_window_holds_its_records_from_every_day_and_nothing_else(file_storage: Storage) -> None:
    records = [record(minutes) for minutes in (-90, -20, -1, 0, 15, 29.9, 30, 200)]
    write_shards(file_storage, PREFIX, records, per_shard=3)
    file_storage.write_bytes(logged_image_key(PREFIX, "0" * 64), b"an image, never read as a shard")

    window = read_window(file_storage, PREFIX, MIDNIGHT - dt.timedelta(minutes=30), MIDNIGHT + dt.timedelta(minutes=30))

    assert [item.time for item in window] == [item.time for item in records[1:6]]
    assert read_window(file_storage, PREFIX, MIDNIGHT, MIDNIGHT + dt.timedelta(hours=1), model="run-2") == []


def test_a_shard_that_is_not_logged_predictions_is_one_clear_error(file_storage: Storage) -> None:
    file_storage.write_bytes(prediction_shard_key(PREFIX, "2026-12-04", "000000-x.jsonl"), b'{"time": 1}\n')

    with pytest.raises(WindowError, match=r"000000-x\.jsonl is not a shard of logged predictions"):
        read_window(file_storage, PREFIX, MIDNIGHT, MIDNIGHT + dt.timedelta(hours=1))


def test_predictions_take_the_top_label_and_the_embeddings_logged() -> None:
    predictions = window_predictions([record(0, "rose", [1.0, 2.0]), record(1, "tulip"), record(2, "rose", [3.0, 4.0])])

    assert predictions.labels == ["rose", "tulip", "rose"]
    np.testing.assert_allclose(predictions.confidences, [0.9, 0.9, 0.9])
    np.testing.assert_allclose(predictions.embeddings, [[1.0, 2.0], [3.0, 4.0]])
