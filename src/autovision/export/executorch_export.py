"""ExecuTorch export (``.pte`` with the XNNPACK delegate), lowered and run in its own venv.

ExecuTorch needs numpy 2; the project's venv keeps numpy below 2 for the local
tritonserver. So the model is exported here with ``torch.export`` (both venvs pin
the same torch), and ``.venv-executorch`` (``scripts/setup-executorch.sh``) lowers it
and runs the runtime, through ``executorch_worker.py`` as a subprocess.

The export is a directory: ``model.pte``, ``labels.txt`` and ``preprocessing.json``
(square size, RGB mean and std), since a ``.pte`` file has no metadata slot.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autovision.export.edge_files import EdgeInput, write_atomically
from autovision.preprocess import FloatArray

PTE_FILE = "model.pte"
LABELS_FILE = "labels.txt"
PREPROCESSING_FILE = "preprocessing.json"
WORKER = Path(__file__).with_name("executorch_worker.py")
# Where scripts/setup-executorch.sh puts the venv, relative to the repository root.
DEFAULT_VENV = Path(".venv-executorch")


def executorch_python(venv: Path = DEFAULT_VENV) -> Path:
    """The Python of the ExecuTorch venv; FileNotFoundError saying how to create it when absent."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} does not exist: run scripts/setup-executorch.sh")
    return python


def _worker(python: Path, *args: str) -> None:
    # -I: the worker's own folder must not shadow the executorch package.
    result = subprocess.run([str(python), "-I", str(WORKER), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip()[-4000:])


def export_executorch(model: nn.Module, example: torch.Tensor, spec: EdgeInput, path: Path, python: Path) -> Path:
    """Write the ExecuTorch directory at ``path``; raise ``EdgeExportError`` naming the op it refused."""

    def write(staged: Path) -> None:
        staged.mkdir()
        with tempfile.TemporaryDirectory(prefix="autovision-executorch-") as workdir:
            program = Path(workdir) / "program.pt2"
            torch.export.save(torch.export.export(model.eval(), (example[:1],)), str(program))
            _worker(python, "lower", str(program), str(staged / PTE_FILE))
        (staged / LABELS_FILE).write_text("\n".join(spec.labels) + "\n")
        preprocessing = {"size": spec.size, "mean": list(spec.mean), "std": list(spec.std), "layout": "NCHW"}
        (staged / PREPROCESSING_FILE).write_text(json.dumps(preprocessing, indent=2) + "\n")

    return write_atomically(path, "ExecuTorch", write)


def executorch_run(
    path: Path, batches: Iterable[FloatArray], python: Path, runs: int, warmup: int
) -> tuple[FloatArray, tuple[float, ...]]:
    """The exported ``model.pte`` in the ExecuTorch runtime on one thread: logits of every NCHW batch (one
    image at a time) and milliseconds of ``runs`` timed calls on the first image after ``warmup`` untimed.

    One worker process does it all, since its imports take seconds (~10 s here): the batches go to it through
    its stdin as they come (read once, one batch in memory here, nothing on disk) and its logits come back
    in one ``.npy``, read memory-mapped.
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return np.zeros((0, 0), dtype=np.float32), ()
    with tempfile.TemporaryDirectory(prefix="autovision-executorch-") as workdir:
        target, times, errors = (Path(workdir) / name for name in ("logits.npy", "times.npy", "stderr.txt"))
        shape = [str(side) for side in first.shape[1:]]
        arguments = ["run", str(path / PTE_FILE), str(target), str(times), str(runs), str(warmup), *shape]
        with errors.open("wb") as stderr:
            worker = subprocess.Popen(
                [str(python), "-I", str(WORKER), *arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,  # a file, never a full pipe that would stall the worker
            )
            try:
                _send(worker, itertools.chain([first], batches))
            except BaseException:
                worker.kill()
                worker.wait()
                raise
        if worker.returncode != 0:
            raise RuntimeError(errors.read_text(errors="replace").strip()[-4000:])
        # Still readable once the directory is gone: the mapping keeps the file's pages.
        logits: FloatArray = np.load(target, mmap_mode="r")
        return logits, tuple(float(ms) for ms in np.load(times))


def _send(worker: subprocess.Popen[bytes], batches: Iterable[FloatArray]) -> None:
    """Each batch's float32 images to the worker's stdin, then its end; wait for the worker to finish."""
    assert worker.stdin is not None
    try:
        for batch in batches:
            worker.stdin.write(np.ascontiguousarray(batch, dtype=np.float32).data.cast("B"))
    except BrokenPipeError:
        pass  # the worker stopped early: its exit status and stderr say why
    worker.communicate()  # closes stdin (ignoring a broken pipe) and waits
