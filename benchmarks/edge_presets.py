"""Training for edge, per preset: the chosen model's .tflite size, LiteRT latency and test top-1.

    python benchmarks/edge_presets.py DATASET_ZIP --budget-milli-node-hours N [--work DIR] [--presets P,...]

For each of AutoML Vision Edge's presets (HigherAccuracy, BestTradeOff,
FasterPredictions) this runs what ``autovision train --target edge --edge-preset P``
runs, in this process, on the same imported dataset version and budget: a search
whose latency objective is each trial's ``.tflite`` file in the LiteRT interpreter on
one CPU thread, the final fit, evaluation and the exports. It prints one JSON line
per preset with the run's own figures for ``model.tflite`` from evaluation.json
(size in bytes, single-thread latency median and p90 over 50 runs, top-1 on the
test split, agreement with PyTorch), the trials, their LiteRT latencies and sizes,
and the seconds the run took. Needs the edge extra.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import StageClock, cpu_model

from autovision.contract.keys import EVALUATION_FILE, RunLocation, model_dir_key
from autovision.data.importer import import_dataset
from autovision.pipeline import train_evaluate_export, train_run_uid
from autovision.resources import EdgePreset, TrainingTarget
from autovision.search.job import SearchSettings
from autovision.storage import Storage


def run_preset(storage: Storage, dataset: str, version: str, preset: EdgePreset, budget: int) -> dict[str, Any]:
    """One preset's run, as ``autovision train --target edge --edge-preset`` makes it; its figures."""
    optimize_for = preset.optimize_for
    uid = train_run_uid(version, budget, optimize_for.value, early_stopping=True, seed=0, target=TrainingTarget.EDGE)
    run = RunLocation("local", dataset, uid)
    settings = SearchSettings(optimize_for=optimize_for, target=TrainingTarget.EDGE)
    started = time.perf_counter()
    card = train_evaluate_export(
        storage, dataset, version, run, StageClock(), budget_milli_node_hours=budget, search=settings
    )
    seconds = time.perf_counter() - started
    evaluation = storage.read_json(f"{model_dir_key(run.prefix)}/{EVALUATION_FILE}")
    (tflite,) = [entry for entry in evaluation["formats"] if entry["format"] == "tflite"]
    search = card.search
    return {
        "preset": preset.value,
        "optimizeFor": optimize_for.value,
        "architecture": card.architecture,
        "inputSize": card.input_size,
        "testTop1": card.metrics.test_accuracy,
        "tflite": tflite,
        "chosenTrial": search["chosenTrial"],
        "trials": [
            {key: trial[key] for key in ("trial", "architecture", "resolution", "value", "latencyMs", "modelBytes")}
            for trial in search["trials"]
        ],
        "milliNodeHoursUsed": card.milli_node_hours_used,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_zip", type=Path)
    parser.add_argument("--budget-milli-node-hours", type=int, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/autovision-edge-presets"))
    parser.add_argument("--presets", default=",".join(EdgePreset))
    args = parser.parse_args()
    storage = Storage(f"file://{args.work.resolve()}")
    name = args.dataset_zip.stem
    version = import_dataset(str(args.dataset_zip), name, storage).version
    print(json.dumps({"machine": cpu_model(), "cores": os.cpu_count(), "loadAverage": os.getloadavg()}))
    for preset in (EdgePreset(text) for text in args.presets.split(",")):
        print(json.dumps(run_preset(storage, name, version, preset, args.budget_milli_node_hours)), flush=True)
    print(json.dumps({"loadAverage": os.getloadavg()}))


if __name__ == "__main__":
    main()
