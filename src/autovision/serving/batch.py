"""Batch prediction, AutoML Vision's batch predict: images from a CSV or a prefix in, JSON Lines out.

No server is involved: the exported ONNX model runs in ONNX Runtime on the same
preprocessing Triton uses, so the answers are the served ones (the export parity
check and the serving tests prove it). The same command runs on a laptop and, in
the trainer image, as a Kubernetes Job.

The output prefix receives ``request.json`` first, then one JSON Lines shard per
``shard_size`` images, then ``manifest.json`` last. A Job retried after a crash
finds its request, keeps the finished shards and writes only the missing ones; an
output prefix holding a different request is refused, never overwritten.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import posixpath
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from autovision.contract.keys import INT8_ONNX_FILE, ONNX_FILE
from autovision.evaluate.metrics import sigmoid, softmax
from autovision.export.layout import ModelLocation
from autovision.preprocess import FloatArray, ImageLimitError, ImageLimits, PreprocessConfig, preprocess_bytes
from autovision.progress import Reporter
from autovision.serving.repository import DecodeBudget
from autovision.settings import Settings
from autovision.storage import Storage, StorageError, object_sizes, open_uri, read_uris

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CSV_HEADERS = ("uri", "image", "image_uri", "path")
REQUEST_FILE = "request.json"
MANIFEST_FILE = "manifest.json"
DEFAULT_SHARD_SIZE = 1000
# Images decoded and run through ONNX Runtime together.
MINIBATCH = 64
# Encoded bytes read at once: a minibatch of images at the 30 MiB limit would otherwise
# hold 1.9 GiB before any check. Images of unknown size count as the byte limit.
READ_GROUP_BYTES = 256 * 1024 * 1024

Variant = Literal["fp32", "int8"]


class BatchPredictionError(RuntimeError):
    """The batch prediction cannot run; the message says why."""


@dataclass(frozen=True)
class BatchOptions:
    """What each output line holds and how the work is cut."""

    top_k: int = 3
    score_threshold: float = 0.0
    variant: Variant = "fp32"
    shard_size: int = DEFAULT_SHARD_SIZE


@dataclass(frozen=True)
class LoadedModel:
    """An exported model ready to score preprocessed images."""

    uri: str
    labels: list[str]
    preprocess: PreprocessConfig
    multi_label: bool
    session: ort.InferenceSession

    def scores(self, inputs: FloatArray) -> FloatArray:
        """Softmax (single-label) or sigmoid (multi-label) scores for a batch of model inputs."""
        session_input = self.session.get_inputs()[0].name
        # The logits are the first output; a run's export has its embedding second, unused here.
        (logits,) = self.session.run([self.session.get_outputs()[0].name], {session_input: inputs})
        activate = sigmoid if self.multi_label else softmax
        return activate(np.asarray(logits, dtype=np.float32))


def load_model(location: ModelLocation, variant: Variant = "fp32") -> LoadedModel:
    """Read the model card and the chosen ONNX file (fp32, or the int8 edge model)."""
    card = location.card()
    filename = INT8_ONNX_FILE if variant == "int8" else ONNX_FILE
    session = ort.InferenceSession(
        location.storage.read_bytes(location.key(filename)), providers=["CPUExecutionProvider"]
    )
    return LoadedModel(
        uri=location.uri(filename),
        labels=card.labels,
        preprocess=PreprocessConfig(size=card.input_size, mean=card.mean, std=card.std),
        multi_label=card.multi_label,
        session=session,
    )


def parse_csv_uris(lines: Iterable[str], base_uri: str) -> Iterator[str]:
    """Image URIs from the first column of a CSV's lines, one at a time; relative entries are relative to the
    CSV's directory."""
    base = posixpath.dirname(base_uri)
    first = True
    for row in csv.reader(lines):
        cell = row[0].strip() if row else ""
        if not cell or (first and cell.lower() in CSV_HEADERS):
            continue
        first = False
        yield cell if "://" in cell or cell.startswith("/") else posixpath.join(base, cell)


def list_images(source: str, settings: Settings | None = None) -> Iterator[str]:
    """The images a batch prediction covers, one at a time: the URIs a CSV lists (read line by line), or every
    image under a prefix (whose listing fsspec returns as one list of keys)."""
    if source.lower().endswith(".csv"):
        with open_uri(source, settings) as handle:
            yield from parse_csv_uris(io.TextIOWrapper(handle, encoding="utf-8-sig", newline=""), source)
        return
    storage = Storage(source, settings)
    yield from (storage.uri(key) for key in storage.list_keys("") if key.lower().endswith(IMAGE_SUFFIXES))


class ListingDigest:
    """How many images a listing holds and the sha256 of their URIs joined by newlines, taken one at a time."""

    def __init__(self) -> None:
        self.count = 0
        self._digest = hashlib.sha256()

    def add(self, uri: str) -> str:
        """Count one more URI; returns it."""
        self._digest.update((("\n" if self.count else "") + uri).encode())
        self.count += 1
        return uri

    def hexdigest(self) -> str:
        """The digest of the URIs added so far."""
        return self._digest.hexdigest()


def prediction_record(uri: str, scores: FloatArray, labels: list[str], options: BatchOptions) -> dict[str, Any]:
    """One output line: the top-k labels scoring at least the threshold, best first."""
    best = np.argsort(-scores, kind="stable")[: options.top_k]
    return {
        "uri": uri,
        "predictions": [
            {"label": labels[i], "score": float(scores[i])} for i in best if scores[i] >= options.score_threshold
        ],
    }


def error_record(uri: str, message: str) -> dict[str, Any]:
    """One output line for an image that could not be read or decoded."""
    return {"uri": uri, "error": message}


def read_groups(
    sizes: list[int | None], limits: ImageLimits, group_bytes: int = READ_GROUP_BYTES
) -> tuple[dict[int, str], list[list[int]]]:
    """Which images to refuse unread (known size over the byte limit), and the others in read groups.

    Each group's encoded bytes stay within ``group_bytes`` (a single image may
    exceed it alone), an image of unknown size counting as the byte limit, so
    reading never holds more than that however large the minibatch is.
    """
    refused: dict[int, str] = {}
    groups: list[list[int]] = []
    group: list[int] = []
    held = 0
    for index, size in enumerate(sizes):
        try:
            limits.check_bytes(size or 0)
        except ImageLimitError as error:
            refused[index] = str(error)
            continue
        cost = limits.max_bytes if size is None else size
        if group and held + cost > group_bytes:
            groups.append(group)
            group, held = [], 0
        group.append(index)
        held += cost
    if group:
        groups.append(group)
    return refused, groups


def predict_uris(
    model: LoadedModel, uris: list[str], options: BatchOptions, settings: Settings | None = None
) -> list[dict[str, Any]]:
    """Output records for some images, in their order, MINIBATCH images per ONNX Runtime call.

    An image whose stored size is over the byte limit is refused without being
    read; the others are read ``READ_GROUP_BYTES`` at a time and decode (header
    checked first) on as many threads as the decode budget allows for images at
    the pixel limit, the same ``DecodeBudget`` that sets Triton's decoding
    instances (Pillow releases the GIL while decoding), never more.
    """
    settings = settings or Settings()
    budget = DecodeBudget.from_settings(settings)
    decode = partial(_decode, config=model.preprocess, limits=budget.limits)
    records: list[dict[str, Any]] = []
    with ThreadPoolExecutor(budget.instances()) as decoders:
        for start in range(0, len(uris), MINIBATCH):
            chunk = uris[start : start + MINIBATCH]
            refused, groups = read_groups(object_sizes(chunk, settings), budget.limits)
            decoded: list[FloatArray | str] = [refused.get(index, "") for index in range(len(chunk))]
            for group in groups:
                encoded = _read([chunk[index] for index in group], settings)
                for index, item in zip(group, decoders.map(decode, encoded), strict=True):
                    decoded[index] = item
            records.extend(_predict_chunk(model, chunk, decoded, options))
    return records


def _read(uris: list[str], settings: Settings | None) -> list[bytes | str]:
    """Every image's bytes, or why it cannot be read; one missing image does not fail the others."""
    try:
        return list(read_uris(uris, settings))
    except StorageError:
        return [_read_one(uri, settings) for uri in uris]


def _read_one(uri: str, settings: Settings | None) -> bytes | str:
    try:
        with open_uri(uri, settings) as handle:
            return bytes(handle.read())
    except (StorageError, OSError) as error:
        return f"cannot read the image: {error}"


def _decode(data: bytes | str, config: PreprocessConfig, limits: ImageLimits) -> FloatArray | str:
    if isinstance(data, str):
        return data
    try:
        return preprocess_bytes(data, config, limits)
    # Pillow signals unreadable input with many exception types; each one fails only this image.
    except Exception as error:  # noqa: BLE001
        return f"not a decodable image: {type(error).__name__}: {error}"


def _predict_chunk(
    model: LoadedModel, uris: list[str], decoded: list[FloatArray | str], options: BatchOptions
) -> list[dict[str, Any]]:
    good = [i for i, item in enumerate(decoded) if not isinstance(item, str)]
    scores = model.scores(np.stack([decoded[i] for i in good])) if good else np.zeros((0, len(model.labels)))
    by_index = dict(zip(good, scores, strict=True))
    return [
        prediction_record(uri, by_index[i], model.labels, options) if i in by_index else error_record(uri, str(item))
        for i, (uri, item) in enumerate(zip(uris, decoded, strict=True))
    ]


def shard_key(index: int, count: int) -> str:
    """The output key of one shard: ``predictions-00000-of-00003.jsonl``."""
    return f"predictions-{index:05d}-of-{count:05d}.jsonl"


def describe_request(source: str, listing: ListingDigest, model: LoadedModel, options: BatchOptions) -> dict[str, Any]:
    """What was asked, precisely enough that a retry recognises its own earlier output."""
    return {
        "source": source,
        "images": listing.count,
        "imagesSha256": listing.hexdigest(),
        "model": model.uri,
        "topK": options.top_k,
        "scoreThreshold": options.score_threshold,
        "shardSize": options.shard_size,
    }


def run_batch_prediction(
    source: str,
    model: LoadedModel,
    output: Storage,
    options: BatchOptions,
    *,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Predict every image of ``source`` into shards under ``output``; returns the manifest (written last).

    The source is listed twice, one URI at a time (counted and hashed for the request, then read a shard at a
    time), so no list of every image is held; a source that changes in between is refused before the manifest.
    """
    listed = ListingDigest()
    for uri in list_images(source, output.settings):
        listed.add(uri)
    if not listed.count:
        raise BatchPredictionError(f"{source} lists no images ({', '.join(IMAGE_SUFFIXES)})")
    request = describe_request(source, listed, model, options)
    if output.exists(MANIFEST_FILE):
        manifest: dict[str, Any] = output.read_json(MANIFEST_FILE)
        _require_same_request(output, manifest["request"], request)
        return manifest
    if output.exists(REQUEST_FILE):
        _require_same_request(output, output.read_json(REQUEST_FILE), request)
    output.write_json(REQUEST_FILE, request)
    count = -(-listed.count // options.shard_size)
    keys = [shard_key(index, count) for index in range(count)]
    if reporter:
        reporter.stage("Predicting", total=listed.count)
    errors = done = 0
    read = ListingDigest()
    uris = (read.add(uri) for uri in list_images(source, output.settings))
    for key in keys:
        shard = list(itertools.islice(uris, options.shard_size))
        if not output.exists(key):  # a retry keeps the shards an earlier attempt finished
            records = predict_uris(model, shard, options, output.settings)
            output.write_bytes(key, "".join(json.dumps(record) + "\n" for record in records).encode())
        errors += sum("error" in json.loads(line) for line in output.read_bytes(key).decode().splitlines())
        done += len(shard)
        if reporter:
            reporter.update(done, f"{done} of {listed.count} images, {errors} errors")
    for uri in uris:  # images added to the source since it was first listed
        read.add(uri)
    if read.hexdigest() != listed.hexdigest():
        raise BatchPredictionError(f"{source} changed during the batch prediction: run it again")
    manifest = {
        "request": request,
        "shards": [output.uri(key) for key in keys],
        "images": listed.count,
        "errors": errors,
        "completedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    output.write_json(MANIFEST_FILE, manifest)
    return manifest


def _require_same_request(output: Storage, found: dict[str, Any], wanted: dict[str, Any]) -> None:
    if found != wanted:
        raise BatchPredictionError(
            f"{output.uri('')} already holds the output of another batch prediction "
            f"({found.get('source')}, model {found.get('model')}): choose another output prefix"
        )
