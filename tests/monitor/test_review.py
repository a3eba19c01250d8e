"""The review set's choice and CSV: least confident first, stored images only, once per image."""

from __future__ import annotations

import pytest

from autovision.contract.files import LoggedLabel, LoggedPrediction
from autovision.data.sources.csv_index import CsvRow, parse_row
from autovision.monitor.review import ReviewSetError, least_confident, review_csv


def record(sha256: str, score: float, stored: bool = True) -> LoggedPrediction:
    return LoggedPrediction(
        time="2026-12-04T16:30:05.123+00:00",
        deployment="flowers",
        model="run-a",
        sha256=sha256,
        top=[LoggedLabel(label="daisy", score=score), LoggedLabel(label="roses", score=score / 2)],
        latency_ms=3.0,
        image_stored=stored,
    )


def test_the_least_confident_stored_images_come_first_each_once() -> None:
    records = [
        record("a", 0.9),
        record("b", 0.4),
        record("c", 0.6),
        record("a", 0.55),  # a's least confident sighting counts
        record("d", 0.1, stored=False),  # no image to label
        record("e", 0.6),
    ]
    chosen = least_confident(records, 3, "predictions/ml/flowers")
    assert [(r.sha256, r.top[0].score) for r in chosen] == [("b", 0.4), ("a", 0.55), ("c", 0.6)]
    assert [r.sha256 for r in least_confident(records, 10, "x")] == ["b", "a", "c", "e"]


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([], "holds no logged predictions"),
        ([record("a", 0.2, stored=False)], "1 logged prediction(s) but no stored image"),
    ],
)
def test_a_log_with_nothing_to_review_is_one_clear_error(records: list[LoggedPrediction], message: str) -> None:
    with pytest.raises(ReviewSetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        least_confident(records, 5, "file:///logs/predictions/ml/flowers")


def test_rows_import_back_unlabelled_and_with_the_label_a_person_appends() -> None:
    text = review_csv([record("ab12", 0.3)], lambda sha: f"s3://bucket/predictions/ml/flowers/images/{sha}").decode()
    assert text == "UNASSIGNED,s3://bucket/predictions/ml/flowers/images/ab12\n"
    uri = "s3://bucket/predictions/ml/flowers/images/ab12"
    assert parse_row(text.encode(), 1, "s3://bucket", multi_label=False) == CsvRow(uri, (), None, 1)
    labelled = text.strip() + ",daisy\n"
    assert parse_row(labelled.encode(), 1, "s3://bucket", multi_label=False) == CsvRow(uri, ("daisy",), None, 1)
