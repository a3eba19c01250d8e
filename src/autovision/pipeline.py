"""The local runtime's path from a dataset version to a servable model.

Each step reads its inputs from storage and writes its outputs there, and each
step's completion is a marker written last, so a run killed anywhere continues
where it stopped: the dataset version's manifest, the trial checkpoint, and the
model card (``model/model.json``) that closes a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autovision.data.manifest import SPLITS, dataset_prefix, decode_manifest, labels_of
from autovision.evaluate import confusion_matrix_csv, evaluate_classifier, softmax
from autovision.export import check_parity, export_onnx
from autovision.preprocess import PreprocessConfig
from autovision.progress import Reporter
from autovision.serving import write_local_repository
from autovision.storage import Storage
from autovision.train.trainer import EpochResult, TrainConfig, TrialCheckpoint, load_split, predict_logits, train_trial

MODEL_CARD = "model/model.json"


@dataclass(frozen=True)
class RunLocation:
    """Where one TrainingJob run lives: ``runs/<namespace>/<job>/<uid>``."""

    namespace: str
    job: str
    uid: str

    @property
    def prefix(self) -> str:
        return f"runs/{self.namespace}/{self.job}/{self.uid}"


def local_run_uid(dataset_version: str, config: TrainConfig, preprocess: PreprocessConfig) -> str:
    """A stable run id for the local runtime: same data and config, same run (resumable)."""
    text = json.dumps([dataset_version, config.describe(), preprocess.to_json()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_progress(storage: Storage, run: RunLocation, **fields: Any) -> None:
    """progress.json, read by the operator: phase, trials, best so far, budget used."""
    storage.write_json(f"{run.prefix}/progress.json", {"updatedAt": _now(), **fields})


def _milli_node_hours(seconds: float) -> int:
    return int(np.ceil(seconds / 3.6))


def train_evaluate_export(
    storage: Storage,
    dataset: str,
    version: str,
    run: RunLocation,
    reporter: Reporter,
    *,
    config: TrainConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    budget_milli_node_hours: int | None = None,
) -> dict[str, Any]:
    """Train, evaluate on the test split, export ONNX and a Triton repository.

    Returns the model card. A run whose model card exists is returned as is.
    """
    if storage.exists(f"{run.prefix}/{MODEL_CARD}"):
        reporter.note(f"run {run.uid} already complete: reusing it")
        card: dict[str, Any] = storage.read_json(f"{run.prefix}/{MODEL_CARD}")
        return card
    config = config or TrainConfig()
    preprocess = preprocess or PreprocessConfig()
    records = decode_manifest(storage.read_bytes(f"{dataset_prefix(dataset, version)}/manifest.jsonl"))
    labels = labels_of(records)
    reporter.stage("Loading images", total=3)
    splits = {}
    for done, split in enumerate(SPLITS, start=1):
        splits[split] = load_split(records, labels, split, preprocess, storage)
        reporter.update(done, f"{split}: {len(splits[split].targets)} images")

    def on_epoch(result: EpochResult) -> None:
        reporter.update(result.epoch, f"validation accuracy {result.validation_accuracy:.3f}")
        write_progress(
            storage,
            run,
            phase="Searching",
            trials={"done": 0, "running": 1, "pruned": 0},
            best={
                "trial": 0,
                "architecture": "residual_cnn",
                "metric": "validationAccuracy",
                "value": result.validation_accuracy,
            },
            milliNodeHoursUsed=_milli_node_hours(result.seconds_used),
        )

    reporter.stage("Training trial 0", total=config.epochs)
    checkpoint = TrialCheckpoint(storage, f"{run.prefix}/trials/0/checkpoint.pt")
    trial = train_trial(
        splits["train"],
        splits["validation"],
        len(labels),
        config,
        checkpoint=checkpoint,
        on_epoch=on_epoch,
        max_seconds=None if budget_milli_node_hours is None else budget_milli_node_hours * 3.6,
    )

    reporter.stage("Evaluating on the test split", total=1)
    test = splits["test"]
    probabilities = softmax(predict_logits(trial.model, test.inputs))
    evaluation = evaluate_classifier(probabilities, test.targets.numpy(), labels, test.uris)
    storage.write_json(f"{run.prefix}/model/evaluation.json", evaluation)
    storage.write_bytes(f"{run.prefix}/model/confusion_matrix.csv", confusion_matrix_csv(evaluation).encode())
    reporter.update(1, f"test accuracy {evaluation['accuracy']:.3f}")

    reporter.stage("Exporting ONNX and the Triton repository", total=2)
    with tempfile.TemporaryDirectory(prefix="autovision-export-") as workdir:
        onnx_path = export_onnx(trial.model, test.inputs, Path(workdir) / "model.onnx")
        parity = check_parity(trial.model, onnx_path, test.inputs)
        storage.write_bytes(f"{run.prefix}/model/model.onnx", onnx_path.read_bytes())
        reporter.update(1, f"parity max |diff| {parity['maxAbsDiff']:.2e}")
        repository = Path(workdir) / "triton"
        write_local_repository(repository, onnx_path, labels, preprocess)
        storage.delete_prefix(f"{run.prefix}/triton")
        storage.upload_dir(repository, f"{run.prefix}/triton")
        reporter.update(2, "Triton repository written")

    card = {
        "architecture": config.architecture.describe(),
        "training": config.describe(),
        "inputSize": preprocess.size,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "labels": labels,
        "dataset": {"name": dataset, "version": version},
        "metrics": {
            "testAccuracy": evaluation["accuracy"],
            "validationAccuracy": trial.best_validation_accuracy,
            "bestEpoch": trial.best_epoch,
            "epochsTrained": len(trial.history),
        },
        "parity": parity,
        "milliNodeHoursUsed": _milli_node_hours(trial.seconds_used),
        "trainingSeconds": round(trial.seconds_used, 2),
        "artifacts": {
            "onnx": storage.uri(f"{run.prefix}/model/model.onnx"),
            "evaluation": storage.uri(f"{run.prefix}/model/evaluation.json"),
            "tritonRepository": storage.uri(f"{run.prefix}/triton"),
        },
        "createdAt": _now(),
    }
    storage.write_json(f"{run.prefix}/{MODEL_CARD}", card)
    write_progress(
        storage,
        run,
        phase="Succeeded",
        trials={"done": 1, "running": 0, "pruned": 0},
        best={
            "trial": 0,
            "architecture": "residual_cnn",
            "metric": "validationAccuracy",
            "value": trial.best_validation_accuracy,
        },
        milliNodeHoursUsed=card["milliNodeHoursUsed"],
        artifacts=card["artifacts"],
    )
    return card
