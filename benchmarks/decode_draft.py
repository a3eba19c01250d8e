"""Benchmark: JPEG decoding for a small model input, full-size vs Pillow's reduced-size ``draft``.

    .venv/bin/python benchmarks/decode_draft.py [--size 224] [--seconds 3] [--model RUN]
        [--flowers ../shared/datasets/flowers.zip --work DIR --budget 60]

Times, in one thread's CPU time (images/s per core), what serving does per request: decode a
1-, 4- and 12-megapixel JPEG and resize it to the model's input. "before" decodes
every pixel (``decode_image`` without the input size), "after" is the one
preprocessing function (``load_pixels``), which lets JPEGs decode at 1/2, 1/4 or
1/8 scale. With ``--model`` (a finished run), it also measures that model's
accuracy before and after on the bundled digits upsampled to 1,600 px JPEGs (the
digits are 8 px, so large photos are simulated; they include training images, so
only the difference between the two accuracies means anything). With ``--flowers``
(a zip of labelled photos), it imports the zip with AutoVision's importer into
``--work``, trains a model there once with the search at ``--budget`` milli
node-hours (a rerun reuses both), and measures that model on its own held-out test
split, every photo upsampled (bicubic) to ``LARGE_SIDE`` px on its long side and
saved as a JPEG: accuracy decoding every pixel vs with ``draft``, and how often the
two top-1 answers agree. flowers' photos are 208 px squares (a few 150 px), where ``draft`` never
applies, hence the upsampling. Skipped, with a note, when the zip is absent.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import StageClock, cpu_model
from PIL import Image

from autovision.contract.keys import RunLocation
from autovision.data.digits import digits_zip_bytes
from autovision.data.importer import import_dataset
from autovision.export.layout import locate_model
from autovision.pipeline import train_evaluate_export
from autovision.preprocess import (
    ImageLimits,
    PixelArray,
    PreprocessConfig,
    decode_image,
    image_to_array,
    load_pixels,
    preprocess_bytes,
    resized_pixels,
)
from autovision.serving.batch import LoadedModel, load_model
from autovision.storage import Storage

MEGAPIXELS = (1, 4, 12)
LARGE_SIDE = 1600
LIMITS = ImageLimits()


def photo_like_jpeg(megapixels: float, seed: int = 0) -> bytes:
    """A 4:3 JPEG (quality 90) with smooth shading, edges and sensor-like noise."""
    width = round(math.sqrt(megapixels * 1e6 * 4 / 3))
    height = round(width * 3 / 4)
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 6 * math.pi, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 4 * math.pi, height, dtype=np.float32)[:, None]
    shading = 128 + 60 * np.sin(x) * np.cos(y)
    edges = 40 * (np.sin(7 * x + 3 * y) > 0)
    pixels = np.stack([shading + edges, shading * 0.8, 255 - shading], axis=-1)
    pixels += rng.normal(0, 6, size=pixels.shape).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def full_decode(data: bytes, size: int) -> PixelArray:
    """What serving did before: every pixel decoded, then resized."""
    return resized_pixels(decode_image(data, LIMITS), size)


def images_per_second(decode: Callable[[bytes, int], Any], data: bytes, size: int, seconds: float) -> float:
    """Decodes per CPU second of this thread, over at least ``seconds`` of its CPU time.

    CPU time, not wall time: on a shared machine other processes would otherwise set the figure.
    """
    count, started = 0, time.thread_time()
    while (elapsed := time.thread_time() - started) < seconds or count < 3:
        decode(data, size)
        count += 1
    return count / elapsed


def throughput(size: int, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for megapixels in MEGAPIXELS:
        data = photo_like_jpeg(megapixels)
        before = images_per_second(full_decode, data, size, seconds)
        after = images_per_second(lambda d, s: load_pixels(d, s, LIMITS), data, size, seconds)
        difference = np.abs(full_decode(data, size).astype(np.int16) - load_pixels(data, size, LIMITS)).mean()
        rows.append(
            {
                "megapixels": megapixels,
                "jpegBytes": len(data),
                "beforeImagesPerSecond": round(before, 1),
                "afterImagesPerSecond": round(after, 1),
                "speedup": round(after / before, 2),
                "meanAbsPixelDifference": round(float(difference), 3),
            }
        )
    return rows


def upsampled_digits() -> list[tuple[bytes, str]]:
    """Every bundled digit as a 1,600 px JPEG (bicubic upsampling), with its label."""
    images = []
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        for name in archive.namelist():
            small = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            buffer = io.BytesIO()
            small.resize((LARGE_SIDE, LARGE_SIDE), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
            images.append((buffer.getvalue(), name.split("/")[0]))
    return images


def accuracy(model: LoadedModel, images: list[tuple[bytes, str]], preprocess: Callable[[bytes], Any]) -> float:
    correct = 0
    for data, label in images:
        scores = model.scores(preprocess(data)[None])[0]
        correct += model.labels[int(np.argmax(scores))] == label
    return correct / len(images)


def accuracies(run: str) -> dict[str, Any]:
    model = load_model(locate_model(run))
    config: PreprocessConfig = model.preprocess
    images = upsampled_digits()
    before = accuracy(model, images, lambda data: image_to_array(decode_image(data, LIMITS), config))
    after = accuracy(model, images, lambda data: preprocess_bytes(data, config, LIMITS))
    return {"images": len(images), "side": LARGE_SIDE, "inputSize": config.size, "before": before, "after": after}


def upsampled_jpeg(data: bytes, side: int = LARGE_SIDE) -> bytes:
    """A photo enlarged (bicubic) to ``side`` px on its long side, as a quality-90 JPEG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = side / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    buffer = io.BytesIO()
    image.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def flowers_accuracies(data: Path, work: Path, budget: int) -> dict[str, Any]:
    """A model trained by AutoVision on ``data``, measured on its upsampled test split, full decode vs draft."""
    clock = StageClock()
    storage = Storage(f"file://{work.resolve()}/storage")
    dataset = import_dataset(str(data), "flowers", storage)
    run = RunLocation("bench", "decode-draft", "flowers")
    started = time.perf_counter()
    card = train_evaluate_export(storage, "flowers", dataset.version, run, clock, budget_milli_node_hours=budget)
    trained = time.perf_counter() - started
    model = load_model(locate_model(storage.uri(run.prefix)))
    config: PreprocessConfig = model.preprocess
    with zipfile.ZipFile(data) as archive:
        test = [(archive.read(record.source), record.labels[0]) for record in dataset.records if record.split == "test"]
    images = [(upsampled_jpeg(photo), label) for photo, label in test]
    before = predictions(model, images, lambda photo: image_to_array(decode_image(photo, LIMITS), config))
    after = predictions(model, images, lambda photo: preprocess_bytes(photo, config, LIMITS))
    labels = [label for _, label in images]
    return {
        "images": len(images),
        "longSide": LARGE_SIDE,
        "inputSize": config.size,
        "architecture": card.architecture,
        "budgetMilliNodeHours": budget,
        "trainingWallSeconds": round(trained, 1),
        "testAccuracyAtOriginalSize": card.metrics.test_accuracy,
        "before": sum(p == t for p, t in zip(before, labels, strict=True)) / len(images),
        "after": sum(p == t for p, t in zip(after, labels, strict=True)) / len(images),
        "top1Agreement": sum(b == a for b, a in zip(before, after, strict=True)) / len(images),
    }


def predictions(model: LoadedModel, images: list[tuple[bytes, str]], preprocess: Callable[[bytes], Any]) -> list[str]:
    """The model's top-1 label of each image, preprocessed by ``preprocess``."""
    return [model.labels[int(np.argmax(model.scores(preprocess(data)[None])[0]))] for data, _ in images]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="the model input's side, in pixels")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--model", default=None, help="a finished run, for the accuracy before and after")
    parser.add_argument("--flowers", type=Path, default=None, help="a zip of labelled photos (flowers.zip)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/autovision-decode-draft"), help="its storage")
    parser.add_argument("--budget", type=int, default=60, help="milli node-hours to train the flowers model")
    parser.add_argument("--skip-throughput", action="store_true", help="measure only the accuracies")
    args = parser.parse_args()
    result: dict[str, Any] = {"cpu": cpu_model(), "size": args.size}
    if not args.skip_throughput:
        result["throughput"] = throughput(args.size, args.seconds)
    if args.model:
        result["accuracy"] = accuracies(args.model)
    if args.flowers and not args.flowers.exists():
        result["flowers"] = f"skipped: {args.flowers} is absent"
    elif args.flowers:
        result["flowers"] = flowers_accuracies(args.flowers, args.work, args.budget)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
