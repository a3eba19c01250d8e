"""A window of logged predictions: the shards of a deployment's prediction log read back for a time range.

Shards lie under ``<prefix>/<YYYY-MM-DD>/`` (UTC day) and are written whole, so
every shard listed is complete; a record belongs to the window by its own
``time``, whatever shard holds it.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np

from autovision.contract.files import LoggedPrediction
from autovision.contract.keys import prediction_day_prefix
from autovision.monitor.drift import Predictions
from autovision.storage import Storage


class WindowError(ValueError):
    """A shard of the window cannot be read as logged predictions."""


def window_days(start: dt.datetime, end: dt.datetime) -> list[str]:
    """The UTC days (YYYY-MM-DD) whose shards may hold records of ``[start, end)``."""
    day, last = start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()
    days = []
    while day <= last:
        days.append(day.isoformat())
        day += dt.timedelta(days=1)
    return days


def _records(storage: Storage, key: str) -> list[LoggedPrediction]:
    try:
        lines = storage.read_bytes(key).decode("utf-8").splitlines()
        return [LoggedPrediction.model_validate(json.loads(line)) for line in lines if line.strip()]
    except ValueError as error:  # JSON, UTF-8 and pydantic errors alike
        raise WindowError(f"{storage.uri(key)} is not a shard of logged predictions: {error}") from error


def read_window(
    storage: Storage, prefix: str, start: dt.datetime, end: dt.datetime, model: str | None = None
) -> list[LoggedPrediction]:
    """The logged predictions of ``[start, end)`` under a prediction log ``prefix`` (of ``model`` only, if
    given), oldest first."""
    records: list[LoggedPrediction] = []
    for day in window_days(start, end):
        for key in storage.list_keys(prediction_day_prefix(prefix, day)):
            records.extend(
                record
                for record in _records(storage, key)
                if start <= dt.datetime.fromisoformat(record.time) < end and model in (None, record.model)
            )
    return sorted(records, key=lambda record: dt.datetime.fromisoformat(record.time))


def window_predictions(records: list[LoggedPrediction]) -> Predictions:
    """What the drift tests compare: the top-1 of every record, and the embeddings of those that logged one."""
    answered = [record for record in records if record.top]
    embeddings = [record.embedding for record in answered if record.embedding]
    return Predictions(
        np.array([record.top[0].score for record in answered], dtype=np.float32),
        [record.top[0].label for record in answered],
        np.array(embeddings, dtype=np.float32) if embeddings else np.zeros((0, 0), dtype=np.float32),
    )
