"""Every format of a finished run: file size, single-thread latency, top-1 and agreement with PyTorch.

    python benchmarks/edge_formats.py RUN_DIR [--executorch-venv .venv-executorch] [--efficientnet-lite-trial N]

Needs the edge extra (and ``scripts/setup-executorch.sh`` for ExecuTorch). The
test split is read from the run's dataset version; the int8 ``.tflite`` file is
calibrated on the training split only. The run's ONNX and int8 ONNX files are
measured as they are; the edge files are converted from its TorchScript model, or,
for EfficientNet-Lite (whose traced "same" padding torch's TorchScript-to-export
converter cannot read back), from trial N's best weights rebuilt on its architecture.
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
from autovision.contract.keys import INT8_ONNX_FILE, MODEL_CARD, MODEL_DIR, ONNX_FILE, TORCHSCRIPT_FILE
from autovision.data.versions import read_version
from autovision.evaluate.formats import FormatRun, format_figures
from autovision.evaluate.predictions import BoolArray
from autovision.export.coreml import export_coreml
from autovision.export.edge import edge_input, module_from_torchscript
from autovision.export.executorch_export import executorch_python, export_executorch
from autovision.export.measure import run_edge, run_onnx
from autovision.export.tflite import export_tflite
from autovision.preprocess import FloatArray, PreprocessConfig, preprocess_batch
from autovision.resources import EdgeFormat
from autovision.storage import Storage, read_uris
from autovision.train.families.efficientnet_lite import EfficientNetLiteConfig
from autovision.train.models import build_model


def _efficientnet_lite(card: ModelCard, checkpoint: Path) -> torch.nn.Module:
    fields = {name: card.architecture[name] for name in ("variant", "frozen_stages", "head", "dropout")}
    model = build_model(EfficientNetLiteConfig(**fields, pretrained=False), len(card.labels))
    model.load_state_dict(torch.load(checkpoint, weights_only=False)["best_model"])
    return _LogitsOnly(model.eval()).eval()


class _LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.model(images)
        return outputs[0] if isinstance(outputs, tuple | list) else outputs  # type: ignore[no-any-return]


def main() -> None:
    """Print one JSON line per format."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--executorch-venv", type=Path, default=Path(".venv-executorch"))
    parser.add_argument("--efficientnet-lite-trial", type=int, help="rebuild the model from this trial's checkpoint")
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
    if args.efficientnet_lite_trial is None:
        module = module_from_torchscript((model_dir / TORCHSCRIPT_FILE).read_bytes(), spec.size)
    else:
        module = _efficientnet_lite(card, args.run / "trials" / str(args.efficientnet_lite_trial) / "checkpoint.pt")
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
