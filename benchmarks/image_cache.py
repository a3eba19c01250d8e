"""Benchmark: filling the trainer's uint8 image cache (read, decode, resize) from a dataset zip.

    .venv/bin/python benchmarks/image_cache.py [--data ZIP] [--res 224,64] [--workers 1,0]

Imports the zip (default: ../shared/datasets/flowers.zip) with AutoVision's importer
into a fresh temporary file:// storage, then times ``load_images`` on the training
split at each resolution with each number of decoding processes (0: the trainer's default,
one per available core up to 8), and prints one JSON line. Every search trial that asks for a
new resolution pays this (it is charged to the budget), so it is the part of a
search's time that is not training.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import cpu_model

from autovision.data.importer import import_dataset
from autovision.data.inspection import MAX_WORKERS, available_cores
from autovision.storage import Storage
from autovision.train.images import load_images

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def run(data: Path, resolutions: list[int], worker_counts: list[int]) -> dict[str, Any]:
    """Import once, then fill the training split's cache at every resolution and number of workers."""
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as folder:
        storage = Storage(f"file://{folder}/storage")
        dataset = import_dataset(str(data), "bench", storage)
        labels = dataset.records.label_set()
        train = dataset.records.where_split("train")
        timings = []
        for size in resolutions:
            for workers in worker_counts:
                began = time.perf_counter()
                cache = load_images(train, labels, size, storage, workers=workers or None)
                seconds = time.perf_counter() - began
                timings.append(
                    {
                        "res": size,
                        "workers": workers or min(available_cores(), MAX_WORKERS),
                        "seconds": round(seconds, 2),
                        "images_per_s": round(len(train) / seconds),
                        "cache_mib": round(cache.pixels.numel() / 2**20, 1),
                    }
                )
    return {
        "benchmark": "image_cache",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu_model()}, {available_cores()} cores",
        "data": data.name,
        "train_images": len(train),
        "timings": timings,
    }


def main() -> None:
    """Parse the command line, run, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "flowers.zip")
    parser.add_argument("--res", type=_numbers, default=[224, 64], help="comma-separated resolutions")
    parser.add_argument("--workers", type=_numbers, default=[1, 0], help="comma-separated; 0 = the default")
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no dataset zip at {args.data}")
    print(json.dumps(run(args.data, args.res, args.workers)), flush=True)


if __name__ == "__main__":
    main()
