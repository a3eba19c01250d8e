"""Every format of a finished run: file size, single-thread latency, top-1 and agreement with PyTorch.

    python benchmarks/edge_formats.py RUN_DIR [--executorch-venv .venv-executorch]

Needs the edge extra (and ``scripts/setup-executorch.sh`` for ExecuTorch). The
test split is read from the run's dataset version; the int8 ``.tflite`` file is
calibrated on the training split only. The run's ONNX and int8 ONNX files are
measured as they are; the edge files are converted from its final model, rebuilt
from its architecture and final checkpoint as ``autovision export`` rebuilds it.
Each file is measured as a run's report measures it (``autovision.export.measure``):
one image at a time, one thread, median and p90 over a fixed number of runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from autovision.contract.files import ModelCard
from autovision.contract.keys import INT8_ONNX_FILE, MODEL_CARD, MODEL_DIR, ONNX_FILE
from autovision.data.versions import read_version
from autovision.evaluate.formats import FormatRun, format_figures
from autovision.evaluate.predictions import BoolArray
from autovision.export.coreml import export_coreml
from autovision.export.edge import edge_input, run_model
from autovision.export.executorch_export import executorch_python, export_executorch
from autovision.export.measure import run_edge, run_onnx
from autovision.export.tflite import export_tflite
from autovision.preprocess import FloatArray, PreprocessConfig, preprocess_batch
from autovision.resources import EdgeFormat
from autovision.storage import Storage, read_uris


def main() -> None:
    """Print one JSON line per format."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--executorch-venv", type=Path, default=Path(".venv-executorch"))
    args = parser.parse_args()
    model_dir = args.run / MODEL_DIR
    card = ModelCard.model_validate(json.loads((model_dir / MODEL_CARD).read_text()))
    spec = edge_input(card)
    root = Storage(str(args.run).split("/runs/")[0])
    records = read_version(root, card.dataset.name, card.dataset.version)
    config = PreprocessConfig(size=spec.size, mean=spec.mean, std=spec.std)

    def images(split: str) -> tuple[FloatArray, BoolArray]:
        chosen = [r for r in records if r.split == split]
        truth = np.array([[label in r.labels for label in spec.labels] for r in chosen], dtype=np.bool_)
        return preprocess_batch(read_uris([r.uri for r in chosen], root.settings), config), truth

    test, truth = images("test")
    train, _ = images("train")
    module = run_model(str(args.run))
    with torch.no_grad():
        expected = np.concatenate([module(torch.from_numpy(x[None])).numpy() for x in test])
    python = executorch_python(args.executorch_venv)
    top1 = float(truth[np.arange(len(test)), expected.argmax(1)].mean())
    print(json.dumps({"format": "pytorch", "images": len(test), "top1": top1}), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir)
        example = torch.from_numpy(test[:1])
        fp32 = export_tflite(module, example, spec, out / "model.tflite")
        int8 = export_tflite(module, example, spec, out / "model.int8.tflite", torch.from_numpy(train))
        pte = export_executorch(module, example, spec, out / "executorch", python)
        mlpackage = export_coreml(module, spec, out / "model.mlpackage")
        runs: list[Callable[[], FormatRun]] = [
            lambda: run_onnx("onnx", model_dir / ONNX_FILE, test),
            lambda: run_onnx("int8 onnx", model_dir / INT8_ONNX_FILE, test),
            lambda: run_edge(EdgeFormat.TFLITE, fp32, test, args.executorch_venv),
            lambda: dataclasses.replace(
                run_edge(EdgeFormat.TFLITE, int8, test, args.executorch_venv), name="int8 tflite"
            ),
            lambda: run_edge(EdgeFormat.EXECUTORCH, pte, test, args.executorch_venv),
            lambda: run_edge(EdgeFormat.COREML, mlpackage, test, args.executorch_venv),
        ]
        for measure in runs:
            print(json.dumps(format_figures(measure(), truth, expected).to_json()), flush=True)


if __name__ == "__main__":
    main()
