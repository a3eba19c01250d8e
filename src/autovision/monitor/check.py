"""One drift check of a deployment: its last window of logged predictions against its model's reference,
the verdict written as the deployment's ``drift/latest.json`` (what ``autovision monitor`` and the operator's
CronJob run)."""

from __future__ import annotations

import datetime as dt

from autovision.contract.files import DriftReport, DriftTest
from autovision.contract.keys import DRIFT_REFERENCE_FILE, drift_report_key
from autovision.export.layout import ModelLocation
from autovision.monitor.drift import DriftSettings, detect_drift
from autovision.monitor.reference import DriftReference
from autovision.monitor.window import read_window, window_predictions
from autovision.storage import Storage


class ReferenceMissingError(LookupError):
    """The model has no drift reference: it was exported before drift monitoring existed."""


def read_reference(location: ModelLocation) -> DriftReference:
    """The model's drift reference; ReferenceMissingError for a model exported without one."""
    key = location.key(DRIFT_REFERENCE_FILE)
    if not location.storage.exists(key):
        raise ReferenceMissingError(
            f"{location.uri()} has no {DRIFT_REFERENCE_FILE}: it was exported before drift monitoring; "
            "train it again to monitor it"
        )
    return DriftReference.from_npz(location.storage.read_bytes(key))


def check_drift(
    storage: Storage,
    log_prefix: str,
    reference: DriftReference,
    *,
    window_minutes: int,
    now: dt.datetime,
    model: str = "",
    settings: DriftSettings | None = None,
) -> DriftReport:
    """Compare the ``window_minutes`` before ``now`` of the log under ``log_prefix`` (``model``'s records only,
    if given) with ``reference``; write and return the report."""
    if window_minutes < 1:
        raise ValueError(f"the window must be at least one minute, got {window_minutes}")
    start = now - dt.timedelta(minutes=window_minutes)
    records = read_window(storage, log_prefix, start, now, model or None)
    result = detect_drift(reference.predictions(), window_predictions(records), settings)
    report = DriftReport(
        status=result.status.value,
        reason=result.reason,
        checked_at=now.isoformat(timespec="seconds"),
        window_start=start.isoformat(timespec="seconds"),
        window_end=now.isoformat(timespec="seconds"),
        model=model,
        predictions=result.window,
        reference_predictions=result.reference,
        threshold=result.threshold,
        tests=[
            DriftTest(
                aspect=test.aspect, method=test.method, statistic=test.statistic, p_value=test.p_value, drift=test.drift
            )
            for test in result.tests
        ],
    )
    storage.write_json(drift_report_key(log_prefix), report.to_json())
    return report
