"""Batch prediction's pure parts: the CSV of images and the records written."""

from __future__ import annotations

import io
import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from autovision.preprocess import ImageLimits, PreprocessConfig
from autovision.serving.batch import (
    MANIFEST_FILE,
    BatchOptions,
    BatchPredictionError,
    LoadedModel,
    parse_csv_uris,
    predict_uris,
    prediction_record,
    read_groups,
    run_batch_prediction,
    shard_key,
)
from autovision.settings import Settings
from autovision.storage import Storage
from tests.support.images import flat_png_bytes, png_claiming
from tests.support.memory import LABELS as SCALE_LABELS
from tests.support.memory import ScaleDatasets, assert_bounded, peaks
from tests.support.serving import TRITON_ADDRESS_SPACE_CAP, make_onnx_classifier


def test_batch_csv_lists_first_column_relative_to_the_csv() -> None:
    text = "uri,label\nimages/a.png,cat\n\n s3://other/b.jpg \n/abs/c.png\nuri.png\n"

    assert list(parse_csv_uris(io.StringIO(text), "s3://bucket/jobs/list.csv")) == [
        "s3://bucket/jobs/images/a.png",
        "s3://other/b.jpg",
        "/abs/c.png",
        "s3://bucket/jobs/uri.png",
    ]
    assert list(parse_csv_uris(["a.png"], "/data/list.csv")) == ["/data/a.png"], "no header: the first row is an image"


def test_batch_record_holds_top_k_above_the_threshold() -> None:
    scores = np.array([0.1, 0.6, 0.05, 0.25], dtype=np.float32)

    record = prediction_record("u", scores, ["a", "b", "c", "d"], BatchOptions(top_k=3, score_threshold=0.2))

    assert record == {
        "uri": "u",
        "predictions": [{"label": "b", "score": pytest.approx(0.6)}, {"label": "d", "score": pytest.approx(0.25)}],
    }
    assert shard_key(3, 12) == "predictions-00003-of-00012.jsonl"


def test_batch_refuses_known_oversized_images_unread_and_reads_the_rest_in_bounded_groups() -> None:
    limits = ImageLimits(max_bytes=100, max_pixels=1000)

    refused, groups = read_groups([40, 101, None, 60, 100, 5, 250], limits, group_bytes=150)

    assert refused == {
        1: "image of 101 bytes exceeds the 100-byte limit",
        6: "image of 250 bytes exceeds the 100-byte limit",
    }
    # Unknown sizes count as the limit (100); no group holds more than 150 bytes unless one image alone.
    assert groups == [[0, 2], [3], [4, 5]]
    assert read_groups([], limits) == ({}, [])


LABELS = ["cat", "dog", "fox"]
SETTINGS = Settings(max_image_bytes=1024 * 1024, max_image_pixels=8_000_000, decode_memory_bytes=10**9)


def _cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (TRITON_ADDRESS_SPACE_CAP, TRITON_ADDRESS_SPACE_CAP))


def _predict(onnx_path: Path, uris: list[str]) -> list[dict[str, Any]]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = LoadedModel("model.onnx", LABELS, PreprocessConfig(size=16), multi_label=False, session=session)
    return predict_uris(model, uris, BatchOptions(), SETTINGS)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_batch_prediction_refuses_over_limit_images_and_answers_the_others(tmp_path: Path) -> None:
    images = {
        "at-pixel-limit.png": (flat_png_bytes(4000, 2000, "RGBA"), None),
        "over-pixel-limit.png": (flat_png_bytes(4000, 2001, "RGB"), "8000000-pixel limit"),
        "claims-huge.png": (png_claiming(100_000, 100_000), "8000000-pixel limit"),
        "warning-range.png": (png_claiming(10_000, 10_000), "8000000-pixel limit"),
        "over-byte-limit.png": (flat_png_bytes(8, 8, "RGB") + b"\0" * (1024 * 1024), "1048576-byte limit"),
        "cmyk.jpg": (_encoded(Image.new("CMYK", (40, 30), (10, 200, 30, 0)), "JPEG"), None),
        "16-bit.png": (_encoded(Image.new("I;16", (40, 30), 40000), "PNG"), None),
    }
    for name, (data, _) in images.items():
        (tmp_path / name).write_bytes(data)
    onnx_path = make_onnx_classifier(tmp_path / "model.onnx", num_labels=len(LABELS))
    uris = [f"file://{tmp_path / name}" for name in images]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=_cap_address_space) as child:
        records = child.submit(_predict, onnx_path, uris).result(timeout=300)
    for record, (name, (_, limit)) in zip(records, images.items(), strict=True):
        if limit is None:
            assert len(record["predictions"]) == len(LABELS), name
        else:
            assert limit in record["error"], name


def test_batch_prediction_refuses_an_object_over_the_byte_limit_before_reading_it(tmp_path: Path) -> None:
    # A sparse 6 GiB file: reading it whole in the child capped at 4 GiB of address space
    # would fail the whole batch with MemoryError; refused by its size, it fails one line.
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.write(flat_png_bytes(8, 8, "RGB"))
        handle.truncate(6 * 1024**3)
    small = tmp_path / "small.png"
    small.write_bytes(flat_png_bytes(40, 30, "RGB"))
    onnx_path = make_onnx_classifier(tmp_path / "model.onnx", num_labels=len(LABELS))
    uris = [f"file://{huge}", f"file://{small}", f"file://{tmp_path / 'missing.png'}"]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn, initializer=_cap_address_space) as child:
        records = child.submit(_predict, onnx_path, uris).result(timeout=300)

    assert records[0] == {"uri": uris[0], "error": f"image of {6 * 1024**3} bytes exceeds the 1048576-byte limit"}
    assert len(records[1]["predictions"]) == len(LABELS)
    assert records[2]["error"].startswith("cannot read the image")


def test_predict_batch_peak_memory_does_not_grow_with_the_images_listed(
    scale_datasets: ScaleDatasets, tmp_path: Path
) -> None:
    model = make_onnx_classifier(tmp_path / "model.onnx", len(SCALE_LABELS))
    args = lambda size: [str(scale_datasets.csvs[size]), str(model), str(tmp_path / f"out-{size}")]  # noqa: E731
    assert_bounded("predict-batch", peaks("predict-batch", args))


def test_batch_prediction_reads_its_csv_a_shard_at_a_time_and_refuses_a_source_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autovision.serving import batch

    images = [tmp_path / f"{number}.png" for number in range(5)]
    for number, path in enumerate(images):
        path.write_bytes(flat_png_bytes(8 + number, 8))
    listing = tmp_path / "images.csv"
    listing.write_text("uri\n" + "".join(f"{path.name}\n" for path in images))
    session = ort.InferenceSession(str(make_onnx_classifier(tmp_path / "m.onnx", len(LABELS))))
    model = LoadedModel("m.onnx", LABELS, PreprocessConfig(size=16), multi_label=False, session=session)
    output = Storage(f"file://{tmp_path / 'out'}")
    shards: list[list[str]] = []

    def predict_and_record(*args: Any) -> list[dict[str, Any]]:
        shards.append(args[1])
        return predict_uris(*args)

    monkeypatch.setattr(batch, "predict_uris", predict_and_record)
    manifest = run_batch_prediction(str(listing), model, output, BatchOptions(shard_size=2))
    assert (manifest["images"], manifest["errors"], len(manifest["shards"])) == (5, 0, 3)
    assert shards == [[str(path) for path in images[:2]], [str(path) for path in images[2:4]], [str(images[4])]]

    def predict_then_change(*args: Any) -> list[dict[str, Any]]:
        listing.write_text(listing.read_text() + f"{images[0].name}\n")
        return predict_uris(*args)

    monkeypatch.setattr(batch, "predict_uris", predict_then_change)
    changed = Storage(f"file://{tmp_path / 'changed'}")
    with pytest.raises(BatchPredictionError, match="changed during the batch prediction"):
        run_batch_prediction(str(listing), model, changed, BatchOptions(shard_size=2))
    assert not changed.exists(MANIFEST_FILE)
