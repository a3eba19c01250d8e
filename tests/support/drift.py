"""Logged traffic for the drift tests: the bundled digits, as they are or shifted, through the tiny CNN."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from autovision.contract.files import LoggedLabel, LoggedPrediction
from autovision.contract.keys import prediction_shard_key
from autovision.data.digits import digits_zip_bytes
from autovision.evaluate import softmax
from autovision.export.torchscript import embedded_outputs
from autovision.monitor.reference import DriftReference
from autovision.preprocess import FloatArray, PreprocessConfig, preprocess_batch
from autovision.storage import Storage
from autovision.train.families import family_of
from tests.support.export import ARCHITECTURE, small_model

DIGIT_LABELS = [str(digit) for digit in range(10)]
Shift = Callable[[bytes], bytes]


@cache
def shuffled_digits() -> tuple[bytes, ...]:
    """Every bundled digit PNG, in a fixed random order (so any slice mixes the classes)."""
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        images = [archive.read(name) for name in sorted(archive.namelist())]
    return tuple(images[index] for index in np.random.default_rng(0).permutation(len(images)))


def _edited(data: bytes, edit: Callable[[Image.Image], Image.Image]) -> bytes:
    buffer = io.BytesIO()
    edit(Image.open(io.BytesIO(data)).convert("RGB")).save(buffer, format="PNG")
    return buffer.getvalue()


def darkened(data: bytes) -> bytes:
    """The image at half its brightness: a camera in dimmer light."""
    return _edited(data, lambda image: ImageEnhance.Brightness(image).enhance(0.5))


def blurred(data: bytes) -> bytes:
    """The image out of focus (Gaussian blur, radius 1.5 px)."""
    return _edited(data, lambda image: image.filter(ImageFilter.GaussianBlur(1.5)))


def served_outputs(images: list[bytes]) -> tuple[FloatArray, FloatArray]:
    """What the tiny CNN (with its embedding) serves for these images: softmax scores and embeddings."""
    model = family_of(ARCHITECTURE).with_embedding(small_model(0))
    outputs = embedded_outputs(model, torch.from_numpy(preprocess_batch(images, PreprocessConfig(size=16))))
    return softmax(outputs["logits"]), outputs["embedding"]


@cache
def digits_reference(count: int) -> DriftReference:
    """The reference of the first ``count`` shuffled digits, as if they were the model's test split."""
    scores, embeddings = served_outputs(list(shuffled_digits()[:count]))
    return DriftReference.of_test_split(DIGIT_LABELS, scores, embeddings)


def logged(images: list[bytes], start: dt.datetime, model: str = "digits") -> list[LoggedPrediction]:
    """The records the gateway would log for these images, one a second from ``start``."""
    scores, embeddings = served_outputs(images)
    return [
        LoggedPrediction(
            time=(start + dt.timedelta(seconds=index)).isoformat(),
            deployment="digits",
            model=model,
            sha256=f"{index:064x}",
            top=[LoggedLabel(label=DIGIT_LABELS[int(row.argmax())], score=float(row.max()))],
            latency_ms=1.0,
            embedding=[float(value) for value in embedding],
        )
        for index, (row, embedding) in enumerate(zip(scores, embeddings, strict=True))
    ]


def write_shards(storage: Storage, prefix: str, records: list[LoggedPrediction], per_shard: int = 50) -> None:
    """Write records as the gateway does: JSON Lines shards under the UTC day of their first record."""
    for start in range(0, len(records), per_shard):
        batch = records[start : start + per_shard]
        first = dt.datetime.fromisoformat(batch[0].time)
        name = f"{first:%H%M%S}-{start:06d}.jsonl"
        lines = "".join(json.dumps(record.to_json()) + "\n" for record in batch)
        storage.write_bytes(prediction_shard_key(prefix, f"{first:%Y-%m-%d}", name), lines.encode())
