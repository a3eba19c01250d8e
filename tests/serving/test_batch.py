"""Batch prediction's pure parts: the CSV of images and the records written."""

from __future__ import annotations

import numpy as np
import pytest

from autovision.serving.batch import BatchOptions, parse_csv_uris, prediction_record, shard_key


def test_batch_csv_lists_first_column_relative_to_the_csv() -> None:
    text = "uri,label\nimages/a.png,cat\n\n s3://other/b.jpg \n/abs/c.png\nuri.png\n"

    assert parse_csv_uris(text, "s3://bucket/jobs/list.csv") == [
        "s3://bucket/jobs/images/a.png",
        "s3://other/b.jpg",
        "/abs/c.png",
        "s3://bucket/jobs/uri.png",
    ]
    assert parse_csv_uris("a.png\n", "/data/list.csv") == ["/data/a.png"], "no header: the first row is an image"


def test_batch_record_holds_top_k_above_the_threshold() -> None:
    scores = np.array([0.1, 0.6, 0.05, 0.25], dtype=np.float32)

    record = prediction_record("u", scores, ["a", "b", "c", "d"], BatchOptions(top_k=3, score_threshold=0.2))

    assert record == {
        "uri": "u",
        "predictions": [{"label": "b", "score": pytest.approx(0.6)}, {"label": "d", "score": pytest.approx(0.25)}],
    }
    assert shard_key(3, 12) == "predictions-00003-of-00012.jsonl"
