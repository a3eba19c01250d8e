"""Batch prediction under the image policy, in a child process under a hard address-space cap."""

from __future__ import annotations

import io
import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import onnxruntime as ort
from PIL import Image

from autovision.preprocess import PreprocessConfig
from autovision.serving.batch import BatchOptions, LoadedModel, predict_uris
from autovision.settings import Settings
from tests.conftest import TRITON_ADDRESS_SPACE_CAP, flat_png_bytes, png_claiming
from tests.test_serving import make_onnx_classifier

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
