"""Peak memory at two dataset sizes: a dataset version of tiny generated images imported at 2,000 and at
20,000 images, and each measured step run in a fresh Python process that reports its peak RSS.

The versions put 90% of their images in the test split, so evaluation and the export's checks read 1,800 and
18,000 test images. A step is measured by running ``python -m tests.support.memory STEP ...`` and reading the
peak RSS (``VmHWM``, KiB) it prints last; the child imports what the step needs before its work, as the
CLI would. (No tests live here.)
"""

from __future__ import annotations

import dataclasses
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.datasets import write_files, write_zip
from tests.support.images import noise_pngs

if TYPE_CHECKING:
    import torch

    from autovision.data.manifest import SplitName
    from autovision.evaluate.split_images import SplitImages
    from autovision.train.families.residual_cnn import ResidualCNNConfig

SIZES = (2_000, 20_000)
# The bound the issue asks for: peak RSS at 20,000 images at most this times the peak at 2,000.
MAX_GROWTH = 1.2
LABELS = ("cat", "dog")
# Model input sizes: large enough that holding the whole test split (as uint8 for evaluation, as float32 input
# for the export) would show in the peak, small enough to stay quick; batch prediction holds no split.
EVALUATION_SIZE = 64
EXPORT_SIZE = 32
PREDICT_SIZE = 16
# What one decoded batch may hold in the measured steps: small, so that the bound shows at 2,000 images.
BUDGET_BYTES = 2 * 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ScaleDatasets:
    """Where the two versions (datasets ``scale-2000`` and ``scale-20000``) and their source CSVs lie."""

    storage_root: str
    versions: dict[int, str]
    csvs: dict[int, Path]


def write_sources(folder: Path, sizes: tuple[int, ...] = SIZES) -> tuple[dict[int, Path], dict[int, Path]]:
    """The images once (as many as the largest size), as files, and per size a zip of label folders (what is
    imported) and a CSV listing the files (what batch prediction reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    pngs = noise_pngs(max(sizes))
    images = {f"{LABELS[number % len(LABELS)]}/{number:06d}.png": png for number, png in enumerate(pngs)}
    write_files(folder / "files", images)
    names = list(images)
    zips = {
        size: write_zip(folder / f"images-{size}.zip", {name: images[name] for name in names[:size]}) for size in sizes
    }
    csvs = {}
    for size in sizes:
        csvs[size] = folder / f"images-{size}.csv"
        csvs[size].write_text("".join(f"{folder / 'files' / name}\n" for name in names[:size]))
    return zips, csvs


def import_versions(folder: Path) -> ScaleDatasets:
    """Import both sizes with the importer into a file:// storage under ``folder``, 90% of each in the test
    split."""
    from autovision.data.importer import import_dataset
    from autovision.data.split import SplitSettings
    from autovision.storage import Storage

    zips, csvs = write_sources(folder / "sources")
    storage = Storage(f"file://{folder / 'storage'}")
    split = SplitSettings(train=5, validation=5, test=90)
    versions = {size: import_dataset(str(path), f"scale-{size}", storage, split).version for size, path in zips.items()}
    return ScaleDatasets(storage.uri(""), versions, csvs)


def peaks(step: str, args: Callable[[int], list[str]]) -> dict[int, int]:
    """The step's peak RSS in KiB at each size, each run in a fresh Python process with ``args(size)``.

    The sizes run at once: each child is one thread and reports its own peak, so running them side by side
    (on two cores, as CI has) changes no figure and halves the wait.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = {
        size: subprocess.Popen(
            [sys.executable, "-m", "tests.support.memory", step, *args(size)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for size in SIZES
    }
    try:
        done = {size: (child.communicate(timeout=300), child.returncode) for size, child in children.items()}
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
    for size, ((stdout, stderr), code) in done.items():
        if code != 0:
            raise AssertionError(f"{step} {args(size)} failed:\n{stdout}\n{stderr}")
    return {size: int(stdout.strip().splitlines()[-1]) for size, ((stdout, _), _) in done.items()}


def version_args(datasets: ScaleDatasets, *extra: str) -> Callable[[int], list[str]]:
    """A step's arguments for the version of each size: storage root, dataset name, version, then ``extra``."""
    return lambda size: [datasets.storage_root, f"scale-{size}", datasets.versions[size], *extra]


def assert_bounded(step: str, measured: dict[int, int]) -> None:
    """The issue's bound: the peak at the largest size at most ``MAX_GROWTH`` times the peak at the smallest."""
    small, large = measured[min(SIZES)], measured[max(SIZES)]
    assert large <= MAX_GROWTH * small, (
        f"{step}: peak RSS {large / 1024:.0f} MiB at {max(SIZES)} images, {small / 1024:.0f} MiB at {min(SIZES)} "
        f"({large / small:.2f}x, at most {MAX_GROWTH}x)"
    )


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # steady timings on a shared machine; the peak does not depend on it


def _tiny_cnn() -> tuple[ResidualCNNConfig, torch.nn.Module]:
    """The measured model: the smallest residual CNN, halving its input at once, so running it costs little.
    (Built in the steps that use torch, so the others' peak holds no torch.)"""
    from autovision.train.families.residual_cnn import ResidualCNNConfig, build_residual_cnn

    architecture = ResidualCNNConfig(width=2, stages=1, stem_stride=2)
    return architecture, build_residual_cnn(architecture, num_classes=len(LABELS)).eval()


def _split_images(root: str, name: str, version: str, split: SplitName, *, budget: str, size: int) -> SplitImages:
    from autovision.data.versions import open_version
    from autovision.evaluate.split_images import SplitImages
    from autovision.storage import Storage

    storage = Storage(root)
    index = open_version(storage, name, version)
    return SplitImages(index, split, list(LABELS), size, storage, int(budget), workers=1)


def _evaluate(root: str, name: str, version: str, budget: str) -> None:
    """Score the test split with a tiny CNN, as the pipeline's evaluation does."""
    from autovision.evaluate.scoring import score_split
    from autovision.preprocess import PreprocessConfig

    _one_thread()
    test = _split_images(root, name, version, "test", budget=budget, size=EVALUATION_SIZE)
    _, model = _tiny_cnn()
    predictions = score_split(model, test, PreprocessConfig(size=EVALUATION_SIZE), multi_label=False)
    assert len(predictions.uris) >= 0.85 * int(name.split("-")[1])


def _export(root: str, name: str, version: str, budget: str, out: str) -> None:
    """Export a tiny CNN with the test split's parity checks and int8 calibration, as the pipeline does."""
    from autovision.export.bundle import export_model
    from autovision.export.edge_files import CALIBRATION_IMAGES
    from autovision.preprocess import PreprocessConfig
    from autovision.train.families import family_of

    _one_thread()
    test = _split_images(root, name, version, "test", budget=budget, size=EXPORT_SIZE)
    validation = _split_images(root, name, version, "validation", budget=budget, size=EXPORT_SIZE)
    calibration = dataclasses.replace(validation, limit=CALIBRATION_IMAGES)
    preprocess = PreprocessConfig(size=EXPORT_SIZE)
    architecture, model = _tiny_cnn()
    exported = export_model(
        model, family_of(architecture), test.inputs(preprocess), calibration.inputs(preprocess), Path(out)
    )
    assert exported.parity["onnx"].images == test.index.count("test")


def _describe(root: str, name: str, version: str) -> None:
    """``autovision dataset describe NAME --json``."""
    from typer.testing import CliRunner

    from autovision.cli import app

    os.environ["AUTOVISION_STORAGE_ROOT"] = root
    result = CliRunner().invoke(app, ["dataset", "describe", name, "--json"])
    assert result.exit_code == 0, result.output
    assert version in result.stdout


def _predict_batch(csv: str, model: str, out: str) -> None:
    """``autovision predict-batch`` over the CSV's images with an ONNX classifier."""
    import onnxruntime as ort

    from autovision.preprocess import PreprocessConfig
    from autovision.serving.batch import BatchOptions, LoadedModel, run_batch_prediction
    from autovision.storage import Storage

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    loaded = LoadedModel(model, list(LABELS), PreprocessConfig(size=PREDICT_SIZE), False, session)
    manifest = run_batch_prediction(csv, loaded, Storage(f"file://{out}"), BatchOptions())
    assert manifest["errors"] == 0


STEPS: dict[str, Callable[..., None]] = {
    "evaluate": _evaluate,
    "export": _export,
    "describe": _describe,
    "predict-batch": _predict_batch,
}


def own_peak_rss_kib() -> int:
    """This process's own peak RSS in KiB: ``VmHWM``, which a new program starts afresh. (``getrusage``'s maxrss
    survives ``exec``, so a child forked from pytest would report at least pytest's own size.)"""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    from autovision.malloc import release_large_buffers

    release_large_buffers()  # as the CLI and the trainer do at their start
    STEPS[sys.argv[1]](*sys.argv[2:])
    print(own_peak_rss_kib())
