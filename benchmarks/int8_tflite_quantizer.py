"""The int8 ``.tflite`` of a finished run with litert-torch's stock quantiser and with AutoVision's.

    python benchmarks/int8_tflite_quantizer.py RUN_DIR {stock,autovision}

Prints one JSON line: the PyTorch model's test top-1, then the int8 file's top-1 and
top-1 agreement with PyTorch, both calibrated on the same first 256 training images
(``autovision.export.edge.training_images``) and run by the LiteRT interpreter on
the whole test split. ``stock`` is ``PT2EQuantizer`` with the symmetric per-channel
config AutoVision used before (ReLU6 sharing its convolution's observer);
``autovision`` is ``autovision.export.tflite_quantizer`` (docs/benchmarks.md, "The
int8 drop"). The run's storage root is the part of RUN_DIR before ``/runs/``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autovision.contract.files import ModelCard
from autovision.contract.keys import MODEL_CARD, MODEL_DIR
from autovision.data.versions import read_version
from autovision.export.edge import edge_input, run_model, training_images
from autovision.export.tflite import export_tflite, tflite_logits
from autovision.preprocess import PreprocessConfig, preprocess_batch
from autovision.storage import Storage, read_uris


def _stock_quantizer() -> Any:
    from litert_torch.quantize import pt2e_quantizer

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    return pt2e_quantizer.PT2EQuantizer().set_global(config)


def main() -> None:
    """Print the int8 file's figures with the chosen quantiser."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("quantizer", choices=("stock", "autovision"))
    args = parser.parse_args()
    card = ModelCard.model_validate(json.loads((args.run / MODEL_DIR / MODEL_CARD).read_text()))
    spec = edge_input(card)
    root = Storage(str(args.run).split("/runs/")[0])
    test = [r for r in read_version(root, card.dataset.name, card.dataset.version) if r.split == "test"]
    config = PreprocessConfig(size=spec.size, mean=spec.mean, std=spec.std)
    inputs = preprocess_batch(read_uris([r.uri for r in test], root.settings), config)
    truth = np.array([spec.labels.index(r.labels[0]) for r in test])
    model = run_model(str(args.run))
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy().argmax(1)
    if args.quantizer == "stock":
        import autovision.export.tflite_quantizer as quantizer_module

        quantizer_module.tflite_quantizer = _stock_quantizer
    calibration = training_images(card, root)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        path = export_tflite(model, torch.from_numpy(inputs[:1]), spec, Path(workdir) / "int8.tflite", calibration)
        seconds = time.perf_counter() - started
        actual = tflite_logits(path, inputs).argmax(1)
    print(
        json.dumps(
            {
                "quantizer": args.quantizer,
                "images": len(test),
                "calibrationImages": len(calibration),
                "pytorchTop1": float((expected == truth).mean()),
                "int8Top1": float((actual == truth).mean()),
                "agreement": float((actual == expected).mean()),
                "exportSeconds": round(seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
