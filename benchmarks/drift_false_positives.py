"""False-positive rate of the drift check on in-distribution windows, and its power on shifted ones.

A tiny residual CNN is trained for a few epochs on the bundled digits (16 px);
400 held-out digits are its "test split", the drift reference. Windows of
``--window-size`` predictions are drawn (without replacement within a window)
from the remaining held-out digits, as they are (in distribution) and darkened
to half brightness or blurred (shifted), and each is checked exactly as
``autovision monitor`` checks a window (``monitor.drift.detect_drift``).
The false-positive rate is the share of in-distribution windows called drift;
the detection rate the share of shifted windows called drift. In-distribution
windows share a pool of ~500 images, so they are not independent: the rate's
spread is wider than the binomial one.

    .venv/bin/python benchmarks/drift_false_positives.py --windows 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import platform
import time
import zipfile

import numpy as np
import numpy.typing as npt
import torch
from _common import cpu_model
from PIL import Image, ImageEnhance, ImageFilter
from torch import nn

from autovision.data.digits import digits_zip_bytes
from autovision.evaluate import softmax
from autovision.export.torchscript import embedded_outputs
from autovision.monitor.drift import DriftSettings, DriftStatus, Predictions, detect_drift
from autovision.preprocess import FloatArray, PreprocessConfig, preprocess_batch
from autovision.train.families import family_of
from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn

ARCHITECTURE = ResidualCNNConfig(width=8, stages=2)
PREPROCESS = PreprocessConfig(size=16)
TRAIN, REFERENCE = 900, 400


def _digits() -> tuple[list[bytes], list[int]]:
    with zipfile.ZipFile(io.BytesIO(digits_zip_bytes())) as archive:
        names = sorted(archive.namelist())
        images = [archive.read(name) for name in names]
    labels = [int(name.split("/")[0].removeprefix("digit_")) for name in names]
    order = np.random.default_rng(0).permutation(len(images))
    return [images[i] for i in order], [labels[i] for i in order]


def _edited(data: bytes, shift: str) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    changed = (
        ImageEnhance.Brightness(image).enhance(0.5)
        if shift == "darkened"
        else image.filter(ImageFilter.GaussianBlur(1.5))
    )
    buffer = io.BytesIO()
    changed.save(buffer, format="PNG")
    return buffer.getvalue()


def _train(images: list[bytes], labels: list[int], epochs: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_residual_cnn(ARCHITECTURE, 10)
    inputs, targets = torch.from_numpy(preprocess_batch(images, PREPROCESS)), torch.tensor(labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(inputs)), 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs[batch]), targets[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
    return model.eval()


def _served(model: nn.Module, images: list[bytes]) -> tuple[FloatArray, FloatArray]:
    outputs = embedded_outputs(model, torch.from_numpy(preprocess_batch(images, PREPROCESS)))
    return softmax(outputs["logits"]), outputs["embedding"]


def _predictions(scores: FloatArray, embeddings: FloatArray, rows: npt.NDArray[np.int64]) -> Predictions:
    chosen = scores[rows]
    return Predictions(chosen.max(axis=1), [str(i) for i in chosen.argmax(axis=1)], embeddings[rows])


def main() -> None:
    """Run the benchmark and print one JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--window-size", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()

    started = time.perf_counter()
    images, labels = _digits()
    embedded = family_of(ARCHITECTURE).with_embedding(_train(images[:TRAIN], labels[:TRAIN], args.epochs))
    reference_scores, reference_embeddings = _served(embedded, images[TRAIN : TRAIN + REFERENCE])
    accuracy = float((reference_scores.argmax(axis=1) == np.array(labels[TRAIN : TRAIN + REFERENCE])).mean())
    reference = _predictions(reference_scores, reference_embeddings, np.arange(REFERENCE))
    pool = images[TRAIN + REFERENCE :]
    served = {
        shift: _served(embedded, [_edited(i, shift) for i in pool] if shift else pool)
        for shift in ("", "darkened", "blurred")
    }
    trained_s = time.perf_counter() - started

    settings = DriftSettings(alpha=args.alpha)
    rng = np.random.default_rng(1)
    called: dict[str, int] = {"in-distribution": 0, "darkened": 0, "blurred": 0}
    aspects: dict[str, int] = {"confidence": 0, "labels": 0, "embedding": 0}
    check_seconds = []
    for _ in range(args.windows):
        rows = rng.choice(len(pool), args.window_size, replace=False)
        for shift, name in (("", "in-distribution"), ("darkened", "darkened"), ("blurred", "blurred")):
            tic = time.perf_counter()
            result = detect_drift(reference, _predictions(*served[shift], rows), settings)
            check_seconds.append(time.perf_counter() - tic)
            called[name] += result.status is DriftStatus.DRIFT
            if not shift:
                for test in result.tests:
                    aspects[test.aspect] += test.drift
    print(
        json.dumps(
            {
                "date": dt.date.today().isoformat(),
                "machine": f"{cpu_model()}, {platform.machine()}",
                "windows": args.windows,
                "windowSize": args.window_size,
                "referenceSize": REFERENCE,
                "alpha": args.alpha,
                "referenceAccuracy": round(accuracy, 3),
                "falsePositiveRate": called["in-distribution"] / args.windows,
                "falsePositivesByAspect": aspects,
                "detectionRate": {name: called[name] / args.windows for name in ("darkened", "blurred")},
                "medianCheckSeconds": round(float(np.median(check_seconds)), 4),
                "trainAndScoreSeconds": round(trained_s, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
