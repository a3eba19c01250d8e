"""Data-parallel training on the CPU: 2 processes x 1 thread against 1 process x 2 threads (issue 21).

All runs train the same configuration (the residual CNN with batch norm, global
batch 64, AdamW) on the same epochs of the scikit-learn digits upsampled to
``--res`` px, through the product's own paths: ``train_trial`` for one process,
``train_data_parallel`` (gloo) for several. Images/s is steady state: images per
epoch x epochs 2..E / the time of epochs 2..E, read from rank 0's checkpoint
history (each rank's epoch includes the same all-reduces, rank 0's its checkpoint
write), so process start-up and the rendezvous are reported apart as wall time.
Scaling efficiency: images/s of N processes x 1 thread / (N x images/s of
1 process x 1 thread). Prints a markdown table and one JSON line.

    .venv/bin/python benchmarks/ddp_cpu.py --epochs 4 --res 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from typing import Any

import torch
from _common import cpu_model

from autovision.data.inspection import available_cores
from autovision.preprocess import PreprocessConfig
from autovision.storage import Storage
from autovision.train.distributed import train_data_parallel
from autovision.train.families.residual_cnn import ResidualCNNConfig
from autovision.train.images import ImageSet
from autovision.train.trainer import TrainConfig, TrialCheckpoint, TrialResult, train_trial


def digits(size: int) -> ImageSet:
    """All 1797 scikit-learn digits as RGB uint8 images of ``size`` px."""
    from sklearn.datasets import load_digits

    loaded = load_digits()
    gray = torch.tensor(loaded.images * 255 / 16, dtype=torch.float32)[:, None]
    resized = torch.nn.functional.interpolate(gray, size=(size, size), mode="bilinear").round().clamp(0, 255)
    pixels = resized.to(torch.uint8).repeat(1, 3, 1, 1).contiguous()
    targets = torch.nn.functional.one_hot(torch.tensor(loaded.target), 10).float()
    return ImageSet(pixels, targets, [f"digit/{i}" for i in range(len(pixels))])


def steady_rate(images_per_epoch: int, result: TrialResult) -> float:
    """Images/s over epochs 2..E from the cumulative seconds of the history (epoch 1 alone if only one)."""
    seconds = [float(entry["seconds"] or 0.0) for entry in result.history]
    if len(seconds) == 1:
        return images_per_epoch / seconds[0]
    return images_per_epoch * (len(seconds) - 1) / (seconds[-1] - seconds[0])


def measure(
    data: ImageSet, config: TrainConfig, preprocess: PreprocessConfig, nproc: int, threads: int
) -> dict[str, Any]:
    """One run of ``nproc`` processes x ``threads`` threads: steady images/s and wall seconds."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = TrialCheckpoint(Storage(f"file://{folder}"), "final/checkpoint.pt")
        started = time.perf_counter()
        if nproc == 1:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                result = train_trial(data, None, config, preprocess, checkpoint=checkpoint)
            finally:
                torch.set_num_threads(previous)
        else:
            result = train_data_parallel(data, config, preprocess, checkpoint=checkpoint, nproc=nproc, threads=threads)
        wall = time.perf_counter() - started
    per_epoch = len(data) // config.batch_size * config.batch_size
    return {
        "processes": nproc,
        "threads": threads,
        "img_per_s": round(steady_rate(per_epoch, result), 1),
        "wall_s": round(wall, 2),
        "final_loss": round(float(result.history[-1]["trainLoss"] or 0.0), 4),
    }


def main() -> None:
    """Run the three layouts and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--res", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    data = digits(args.res)
    preprocess = PreprocessConfig(size=args.res)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, architecture=ResidualCNNConfig(dropout=0.0))
    rows = [measure(data, config, preprocess, n, t) for n, t in ((1, 1), (1, 2), (2, 1))]
    one, threaded, parallel = rows
    summary = {
        "machine": f"{cpu_model()}, {available_cores()} cores, {platform.python_version()}, torch {torch.__version__}",
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "images": len(data),
        "res": args.res,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "rows": rows,
        "ddp_efficiency_vs_1x1": round(parallel["img_per_s"] / (2 * one["img_per_s"]), 3),
        "threads_efficiency_vs_1x1": round(threaded["img_per_s"] / (2 * one["img_per_s"]), 3),
        "ddp_vs_threads": round(parallel["img_per_s"] / threaded["img_per_s"], 3),
    }
    print("| layout | images/s (steady) | wall s (incl. start-up) | last train loss |")
    print("|---|---|---|---|")
    for row in rows:
        layout = f"{row['processes']} process(es) x {row['threads']} thread(s)"
        print(f"| {layout} | {row['img_per_s']} | {row['wall_s']} | {row['final_loss']} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
