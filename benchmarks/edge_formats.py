"""Edge formats of a finished run: file size, single-thread latency, top-1 and agreement with PyTorch.

    python benchmarks/edge_formats.py RUN_DIR [--executorch-venv .venv-executorch]

Needs the edge extra (and ``scripts/setup-executorch.sh`` for ExecuTorch). The
test split is read from the run's dataset version; the int8 ``.tflite`` file is
calibrated on the training split only. Latency: one image at a time, one thread,
median and p90 over ``--runs`` invocations after 10 warm-up runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR, TORCHSCRIPT_FILE
from autovision.data.versions import read_version
from autovision.export.coreml import export_coreml
from autovision.export.edge import edge_input, module_from_torchscript
from autovision.export.executorch_export import PTE_FILE, executorch_logits, executorch_python, export_executorch
from autovision.export.tflite import export_tflite, tflite_logits
from autovision.preprocess import FloatArray, PreprocessConfig, preprocess_batch
from autovision.storage import Storage, read_uris


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _tflite_latency(path: Path, image: FloatArray, runs: int) -> list[float]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    tensor = image.transpose(0, 2, 3, 1)
    if detail["dtype"] != np.float32:
        scale, zero = detail["quantization"]
        tensor = np.clip(np.round(tensor / scale + zero), -128, 127)
    interpreter.set_tensor(detail["index"], tensor.astype(detail["dtype"]))
    times = []
    for i in range(runs + 10):
        start = time.perf_counter()
        interpreter.invoke()
        if i >= 10:
            times.append((time.perf_counter() - start) * 1000)
    return times


_ET_LATENCY = """
import sys, time, torch
from executorch.runtime import Runtime
torch.set_num_threads(1)
method = Runtime.get().load_program(sys.argv[1]).load_method("forward")
x = torch.zeros(1, 3, int(sys.argv[2]), int(sys.argv[2]))
times = []
for i in range(int(sys.argv[3]) + 10):
    start = time.perf_counter(); method.execute([x])
    if i >= 10: times.append((time.perf_counter() - start) * 1000)
print(" ".join(map(str, times)))
"""


def main() -> None:
    """Print one JSON line per format."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--executorch-venv", type=Path, default=Path(".venv-executorch"))
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    model_dir = args.run / MODEL_DIR
    card = ModelCard.model_validate(json.loads((model_dir / MODEL_CARD).read_text()))
    spec = edge_input(card)
    root = Storage(str(args.run).split("/runs/")[0])
    records = read_version(root, card.dataset.name, card.dataset.version)
    config = PreprocessConfig(size=spec.size, mean=spec.mean, std=spec.std)

    def images(split: str) -> tuple[FloatArray, NDArray[np.int64]]:
        chosen = [r for r in records if r.split == split]
        data = read_uris([r.uri for r in chosen], root.settings)
        return preprocess_batch(data, config), np.array([spec.labels.index(r.labels[0]) for r in chosen])

    test, truth = images("test")
    train, _ = images("train")
    module = module_from_torchscript((model_dir / TORCHSCRIPT_FILE).read_bytes(), spec.size)
    with torch.no_grad():
        expected = np.concatenate([module(torch.from_numpy(x[None])).numpy() for x in test])
    python = executorch_python(args.executorch_venv)
    print(json.dumps({"format": "pytorch", "images": len(test), "top1": float((expected.argmax(1) == truth).mean())}))
    print(
        json.dumps({"format": "onnx", "top1": card.metrics.test_accuracy, "int8Top1": card.metrics.int8_test_accuracy})
    )
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir)
        example = torch.from_numpy(test[:1])
        fp32 = export_tflite(module, example, spec, out / "model.tflite")
        int8 = export_tflite(module, example, spec, out / "model.int8.tflite", torch.from_numpy(train))
        pte = export_executorch(module, example, spec, out / "executorch", python)
        mlpackage = export_coreml(module, spec, out / "model.mlpackage")
        results = {
            "tflite": (fp32, tflite_logits(fp32, test), _tflite_latency(fp32, test[:1], args.runs)),
            "tflite-int8": (int8, tflite_logits(int8, test), _tflite_latency(int8, test[:1], args.runs)),
        }
        et_times = subprocess.run(
            [str(python), "-I", "-c", _ET_LATENCY, str(pte / PTE_FILE), str(spec.size), str(args.runs)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        results["executorch"] = (pte, executorch_logits(pte, test, python), [float(t) for t in et_times])
        for name, (path, logits, times) in results.items():
            print(
                json.dumps(
                    {
                        "format": name,
                        "bytes": _size(path),
                        "top1": float((logits.argmax(1) == truth).mean()),
                        "agreement": float((logits.argmax(1) == expected.argmax(1)).mean()),
                        "latencyMsMedian": float(np.median(times)),
                        "latencyMsP90": float(np.percentile(times, 90)),
                    }
                )
            )
        print(json.dumps({"format": "coreml", "bytes": _size(mlpackage), "predictions": "not checked (macOS only)"}))


if __name__ == "__main__":
    main()
