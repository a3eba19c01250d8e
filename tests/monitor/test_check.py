"""One drift check on real images: the digits as the model's test split saw them, then darkened or blurred."""

from __future__ import annotations

import datetime as dt

import pytest

from autovision.contract.files import DriftReport
from autovision.contract.keys import drift_report_key, prediction_log_prefix
from autovision.monitor.check import check_drift
from autovision.monitor.drift import DriftSettings
from autovision.monitor.reference import DriftReference
from autovision.storage import Storage
from tests.support.drift import Shift, blurred, darkened, digits_reference, logged, shuffled_digits, write_shards

PREFIX = prediction_log_prefix("default", "digits")
NOW = dt.datetime(2026, 12, 4, 0, 30, tzinfo=dt.UTC)
# Traffic from ten minutes before midnight on: the window's shards lie under two days.
TRAFFIC_START = NOW - dt.timedelta(minutes=40)
FAST = DriftSettings(permutations=200)


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return digits_reference(400)


def unchanged(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize(("shift", "status"), [(unchanged, "NoDrift"), (darkened, "Drift"), (blurred, "Drift")])
def test_in_distribution_traffic_is_no_drift_and_shifted_traffic_is_drift(
    file_storage: Storage, reference: DriftReference, shift: Shift, status: str
) -> None:
    images = [shift(image) for image in shuffled_digits()[400:600]]  # never in the reference
    write_shards(file_storage, PREFIX, logged(images, TRAFFIC_START))

    report = check_drift(file_storage, PREFIX, reference, window_minutes=60, now=NOW, settings=FAST)

    assert report.status == status, report.reason
    assert report.predictions == 200
    assert report.reference_predictions == 400
    assert DriftReport.model_validate(file_storage.read_json(drift_report_key(PREFIX))) == report
    if status == "Drift":
        assert {test.aspect for test in report.tests if test.drift} >= {"confidence", "embedding"}


def test_a_window_without_traffic_is_unknown(file_storage: Storage, reference: DriftReference) -> None:
    old = logged(list(shuffled_digits()[400:500]), NOW - dt.timedelta(hours=3))
    write_shards(file_storage, PREFIX, old)

    report = check_drift(file_storage, PREFIX, reference, window_minutes=60, now=NOW, settings=FAST)

    assert report.status == "Unknown"
    assert report.reason == "no logged predictions in the window"
    assert report.predictions == 0
    assert report.tests == []
    assert file_storage.exists(drift_report_key(PREFIX))


def test_only_the_named_models_records_count(file_storage: Storage, reference: DriftReference) -> None:
    ours = logged(list(shuffled_digits()[400:500]), TRAFFIC_START)
    theirs = logged([darkened(image) for image in shuffled_digits()[500:700]], TRAFFIC_START, model="other")
    write_shards(file_storage, PREFIX, ours + theirs)

    report = check_drift(file_storage, PREFIX, reference, window_minutes=60, now=NOW, model="digits", settings=FAST)

    assert (report.status, report.predictions) == ("NoDrift", 100)


def test_a_window_of_no_minutes_is_refused(file_storage: Storage, reference: DriftReference) -> None:
    with pytest.raises(ValueError, match="at least one minute"):
        check_drift(file_storage, PREFIX, reference, window_minutes=0, now=NOW)
    assert not file_storage.exists(drift_report_key(PREFIX))
