"""A small local world for the console's tests: an imported dataset with every kind of finding, and a
finished run on it with its evaluation and saved test predictions (no training: scores are made up).
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from autovision.console.app import CSRF_COOKIE, CSRF_HEADER, ConsoleConfig, build_console_app
from autovision.console.guard import ConsoleGuard
from autovision.console.source import ConsoleSource
from autovision.contract.files import ModelCard, Progress
from autovision.contract.keys import (
    EVALUATION_FILE,
    TEST_PREDICTIONS_FILE,
    RunLocation,
    model_card_key,
    model_dir_key,
    model_file_key,
    progress_key,
)
from autovision.data.importer import import_dataset
from autovision.data.record_table import RecordTable
from autovision.evaluate.metrics import evaluate_predictions
from autovision.evaluate.predictions import SplitPredictions
from autovision.storage import Storage
from tests.support.datasets import image_bytes, labelled, write_zip

DATASET = "pets"
LABELS = ["cat", "dog"]
RUN = RunLocation("local", DATASET, "u1")
TOKEN = "test-token"


@dataclass(frozen=True)
class World:
    """Storage with the dataset and the run, and what the tests compare against."""

    storage: Storage
    version: str
    records: RecordTable


def near_copy(seed: int) -> bytes:
    """The image of ``seed`` with one pixel changed: different bytes, same look (a near-duplicate)."""
    image = Image.open(io.BytesIO(image_bytes(seed))).convert("RGB")
    image.putpixel((0, 0), (0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def dataset_zip(path: Path) -> Path:
    """Two labels of 12 images, one image under both labels, one near-duplicate and one broken file."""
    entries = labelled(12, LABELS)
    entries["cat/conflict.png"] = entries["dog/conflict.png"] = image_bytes(99)
    entries["dog/near.png"] = near_copy(0)
    entries["cat/broken.png"] = b"not an image"
    return write_zip(path, entries)


def write_world(root: Path, card: ModelCard) -> World:
    """Import the dataset and lay out a finished run on it, as the pipeline leaves one."""
    storage = Storage(f"file://{root / 'storage'}")
    result = import_dataset(str(dataset_zip(root / "pets.zip")), DATASET, storage)
    test = [record for record in result.records if record.split == "test"]
    targets = np.asarray([LABELS.index(record.labels[0]) for record in test], dtype=np.int64)
    rng = np.random.default_rng(0)
    scores = rng.dirichlet([1.0, 1.0], size=len(test)).astype(np.float32)
    predictions = SplitPredictions.single_label(LABELS, [record.uri for record in test], targets, scores)
    model_dir = model_dir_key(RUN.prefix)
    evaluation = evaluate_predictions(predictions)
    # As the pipeline adds them: one explained mistake, and the exported files' figures.
    grid = [[0.0, 1.0], [0.5, 0.25]]
    explained = [{"uri": test[0].uri, "kind": "mistake", "label": "dog", "score": 0.9, "grid": grid}]
    evaluation["explanations"] = {"method": "grad_cam", "settings": {"grid": 2}, "images": explained}
    latency = {"median": 1.5, "p90": 2.0}
    evaluation["formats"] = [
        {"format": "onnx", "file": "model.onnx", "bytes": 2_000_000, "predictionsChecked": True,
         "latencyMs": latency, "top1": 0.75, "top1Agreement": 1.0},
        {"format": "coreml", "file": "model.mlpackage", "bytes": 1_000_000, "predictionsChecked": False},
    ]  # fmt: skip
    storage.write_json(model_file_key(model_dir, EVALUATION_FILE), evaluation)
    storage.write_bytes(model_file_key(model_dir, TEST_PREDICTIONS_FILE), predictions.to_npz())
    trials = [
        {"trial": 0, "state": "complete", "architecture": "resnet", "value": 0.7, "latencyMs": 2.0, "epochsTrained": 2},
        {
            "trial": 1,
            "state": "pruned",
            "architecture": "mobilenet",
            "value": 0.5,
            "latencyMs": 1.0,
            "epochsTrained": 1,
        },
    ]
    search = {
        "metric": "validationAccuracy",
        "optimizeFor": "Balanced",
        "chosenTrial": 0,
        "stopReason": "budget",
        "trials": trials,
        "paretoFront": [{"trial": 0}, {"trial": 1}],
    }
    finished = card.model_copy(
        update={
            "labels": LABELS,
            "search": search,
            "dataset": card.dataset.model_copy(update={"name": DATASET, "version": result.version}),
        }
    )
    storage.write_json(progress_key(RUN.prefix), Progress(phase="Succeeded").to_json())
    storage.write_json(model_card_key(RUN.prefix), finished.to_json())
    return World(storage=storage, version=result.version, records=result.records)


@dataclass(frozen=True)
class Answer:
    """One response as the tests look at it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def call(
    source: ConsoleSource,
    method: str,
    path: str,
    *,
    csrf: bool = True,
    config: ConsoleConfig | None = None,
    guard: ConsoleGuard | None = None,
    **kwargs: Any,
) -> Answer:
    """One request to a fresh app over ``source``, from its own origin, with the CSRF cookie and header
    unless ``csrf`` is False."""

    async def send() -> Answer:
        app = build_console_app(source, guard=guard, config=config)
        async with TestClient(TestServer(app)) as client:
            headers = dict(kwargs.pop("headers", {}))
            if method != "GET" and csrf:
                headers.setdefault("Origin", str(client.make_url("")).rstrip("/"))
                headers.setdefault(CSRF_HEADER, TOKEN)
                client.session.cookie_jar.update_cookies({CSRF_COOKIE: TOKEN})
            async with client.request(method, path, headers=headers, **kwargs) as response:
                return Answer(response.status, dict(response.headers), await response.read())

    return asyncio.run(send())
