"""Benchmark: streaming training images from shards, next to filling the uint8 cache from the same images.

    .venv/bin/python benchmarks/stream_decode.py rate [--data ZIP] [--res 224] [--batch 64]
    .venv/bin/python benchmarks/stream_decode.py epoch STORAGE_URI NAME VERSION [--res 64] [--batch 256]

``rate`` imports the zip (default: ../shared/datasets/flowers.zip) into a fresh
temporary file:// storage, then on the training split times, on one process (per
core), the cache's fill (``load_images``) and a stream's pass at the same
resolution without augmentation and with it (random-resized crops, as a trial
with ``augment`` 0.5 draws them), then the stream's pass on one process per core.
``epoch`` streams one epoch of an already imported version's training split on
one process per core (decoding and delivering batches; no model), and records the
peak resident memory of the trainer's process and of its largest decoding process,
next to what the cache of that split would hold. Both print one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import cpu_model

from autovision.data.importer import import_dataset
from autovision.data.inspection import available_cores
from autovision.data.record_table import RecordTable
from autovision.data.versions import read_version
from autovision.storage import Storage
from autovision.train.images import load_images
from autovision.train.memory import cache_bytes
from autovision.train.streaming import StreamedImages
from autovision.train.trainer import epoch_order

SHARED = Path(__file__).resolve().parents[2] / "shared"
CPU = torch.device("cpu")
MIB = 2**20


def stream_pass(stream: StreamedImages, batch: int, magnitude: float) -> float:
    """Seconds to deliver one epoch of the stream, in the trainer's shuffled order, batch by batch."""
    order = epoch_order(0, 0, len(stream))
    selections = (order[start : start + batch] for start in range(0, len(order), batch))
    began = time.perf_counter()
    for _ in stream.training_batches(selections, magnitude, seed=0):
        pass
    return time.perf_counter() - began


def rate(data: Path, size: int, batch: int) -> dict[str, Any]:
    """Images/s per core of the cache's fill and the stream's pass, on the same training images."""
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as folder:
        storage = Storage(f"file://{folder}/storage")
        dataset = import_dataset(str(data), "bench", storage)
        labels = dataset.records.label_set()
        train = dataset.records.where_split("train")
        began = time.perf_counter()
        load_images(train, labels, size, storage, workers=1)
        cache = time.perf_counter() - began
        one = _stream(train, labels, size, storage, workers=1)
        plain, cropped = stream_pass(one, batch, 0.0), stream_pass(one, batch, 0.5)
        cores = available_cores()
        every = stream_pass(_stream(train, labels, size, storage, workers=cores), batch, 0.5)
    count = len(train)
    return {
        "benchmark": "stream_decode",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {cores} cores",
        "data": data.name,
        "train_images": count,
        "res": size,
        "per_core_images_per_s": {
            "cache_fill": round(count / cache),
            "stream": round(count / plain),
            "stream_cropped": round(count / cropped),
        },
        f"stream_cropped_on_{cores}_processes_images_per_s": round(count / every),
    }


def epoch(uri: str, name: str, version: str, size: int, batch: int) -> dict[str, Any]:
    """One streamed epoch of a version's training split on one process per core: time and peak memory."""
    storage = Storage(uri)
    records = read_version(storage, name, version).where_split("train")
    cores = available_cores()
    stream = _stream(records, records.label_set(), size, storage, workers=cores)
    seconds = stream_pass(stream, batch, 0.5)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return {
        "benchmark": "stream_decode epoch",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {cores} cores",
        "train_images": len(records),
        "res": size,
        "batch": batch,
        "seconds": round(seconds, 1),
        "images_per_s": round(len(records) / seconds),
        "peak_rss_mib": {"trainer": round(own / MIB), "largest_decoding_process": round(child / MIB)},
        "cache_would_hold_mib": round(cache_bytes(len(records), size) / MIB),
    }


def _stream(records: RecordTable, labels: list[str], size: int, storage: Storage, workers: int) -> StreamedImages:
    return StreamedImages(records, tuple(labels), size, storage.settings, workers, CPU)


def main() -> None:
    """Parse the command line, run, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    rates = modes.add_parser("rate")
    rates.add_argument("--data", type=Path, default=SHARED / "datasets" / "flowers.zip")
    rates.add_argument("--res", type=int, default=224)
    rates.add_argument("--batch", type=int, default=64)
    epochs = modes.add_parser("epoch")
    epochs.add_argument("storage")
    epochs.add_argument("name")
    epochs.add_argument("version")
    epochs.add_argument("--res", type=int, default=64)
    epochs.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    if args.mode == "rate":
        if not args.data.is_file():
            raise SystemExit(f"no dataset zip at {args.data}")
        result = rate(args.data, args.res, args.batch)
    else:
        result = epoch(args.storage, args.name, args.version, args.res, args.batch)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
