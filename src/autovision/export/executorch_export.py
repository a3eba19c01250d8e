"""ExecuTorch export (``.pte`` with the XNNPACK delegate), lowered and run in its own venv.

ExecuTorch needs numpy 2; the project's venv keeps numpy below 2 for the local
tritonserver. So the model is exported here with ``torch.export`` (both venvs pin
the same torch), and ``.venv-executorch`` (``scripts/setup-executorch.sh``) lowers it
and runs the runtime, through ``executorch_worker.py`` as a subprocess.

The export is a directory: ``model.pte``, ``labels.txt`` and ``preprocessing.json``
(square size, RGB mean and std), since a ``.pte`` file has no metadata slot.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
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


def executorch_logits(path: Path, inputs: FloatArray, python: Path) -> FloatArray:
    """Run the exported ``model.pte`` with the ExecuTorch runtime on NCHW inputs, one image at a time."""
    with tempfile.TemporaryDirectory(prefix="autovision-executorch-") as workdir:
        source, target = Path(workdir) / "inputs.npy", Path(workdir) / "logits.npy"
        np.save(source, np.ascontiguousarray(inputs, dtype=np.float32))
        _worker(python, "run", str(path / PTE_FILE), str(source), str(target))
        logits: FloatArray = np.load(target).astype(np.float32)
    return logits


def executorch_latency(path: Path, image: FloatArray, python: Path, runs: int, warmup: int) -> tuple[float, ...]:
    """Milliseconds of each of ``runs`` timed calls of ``model.pte`` on one NCHW image, one thread, in the runtime."""
    with tempfile.TemporaryDirectory(prefix="autovision-executorch-") as workdir:
        source, target = Path(workdir) / "image.npy", Path(workdir) / "times.npy"
        np.save(source, np.ascontiguousarray(image[:1], dtype=np.float32))
        _worker(python, "time", str(path / PTE_FILE), str(source), str(runs), str(warmup), str(target))
        return tuple(float(ms) for ms in np.load(target))
