"""``autovision review-set``: a deployment's log in storage in, the CSV to label out, or one clear error."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from autovision.cli import app as cli
from autovision.contract import env
from autovision.contract.files import LoggedLabel, LoggedPrediction
from autovision.contract.keys import logged_image_key, prediction_log_prefix, prediction_shard_key
from autovision.serving.prediction_log import encode_shard
from autovision.storage import Storage

runner = CliRunner()
PREFIX = prediction_log_prefix("ml", "flowers")


def logged(image: bytes, score: float, stored: bool) -> LoggedPrediction:
    return LoggedPrediction(
        time="2026-12-04T16:30:05.123+00:00",
        deployment="flowers",
        model="run-a",
        sha256=hashlib.sha256(image).hexdigest(),
        top=[LoggedLabel(label="daisy", score=score)],
        latency_ms=2.0,
        image_stored=stored,
    )


def review(storage: Storage, output: Path, *args: str) -> tuple[int, str]:
    command = ["review-set", "flowers", "--namespace", "ml", "--output", str(output), *args]
    result = runner.invoke(cli, command, env={env.STORAGE_ROOT: storage.uri(""), "COLUMNS": "200"})
    return result.exit_code, result.output


def test_review_set_writes_the_least_confident_stored_images(file_storage: Storage, tmp_path: Path) -> None:
    images = [f"image {index}".encode() for index in range(4)]
    records = [logged(image, score, True) for image, score in zip(images, (0.9, 0.3, 0.6, 0.5), strict=True)]
    for image in images:
        file_storage.write_bytes(logged_image_key(PREFIX, hashlib.sha256(image).hexdigest()), image)
    file_storage.write_bytes(prediction_shard_key(PREFIX, "2026-12-04", "163005-a.jsonl"), encode_shard(records[:2]))
    file_storage.write_bytes(prediction_shard_key(PREFIX, "2026-12-05", "000001-b.jsonl"), encode_shard(records[2:]))

    code, output = review(file_storage, tmp_path / "out" / "review.csv", "--count", "2")

    assert code == 0, output
    rows = (tmp_path / "out" / "review.csv").read_text().splitlines()
    expected = [images[1], images[3]]  # scores 0.3, 0.5
    image_uri = [file_storage.uri(logged_image_key(PREFIX, hashlib.sha256(i).hexdigest())) for i in expected]
    assert rows == [f"UNASSIGNED,{uri}" for uri in image_uri]
    assert "2 image(s) to label" in output


def test_a_deployment_that_logged_nothing_or_no_images_gets_one_error(file_storage: Storage, tmp_path: Path) -> None:
    output_csv = tmp_path / "review.csv"
    code, output = review(file_storage, output_csv)
    assert (code, len(output.strip().splitlines())) == (1, 1), output
    assert "holds no logged predictions" in output

    shard = prediction_shard_key(PREFIX, "2026-12-04", "163005-a.jsonl")
    file_storage.write_bytes(shard, encode_shard([logged(b"x", 0.2, False)]))
    code, output = review(file_storage, output_csv)
    assert code == 1
    assert "no stored image" in output
    assert "--log-images" in output
    assert not output_csv.exists(), "nothing is written"
