"""The local runtime's path from a dataset version to a servable model.

Each step reads its inputs from storage and writes its outputs there, and each
step's completion is a marker written last, so a run killed anywhere continues
where it stopped: the dataset version's manifest, the trial checkpoint, and the
model card (``model/model.json``) that closes a run.

A finished run holds, under ``runs/<namespace>/<job>/<uid>/``::

    model/model.onnx, model.pt, model.int8.onnx    exports (fp32 ones parity-checked)
    model/test_predictions.npz                      test-split scores: evaluation can be redone
    model/evaluation.json, confusion_matrix.csv, report.html
    model/model.json                                the model card, written last
    triton/                                         local layout (Python backend + ONNX Runtime)
    triton-cluster/                                 cluster layout (ensemble, ONNX Runtime backend)
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

from autovision.data.manifest import SPLITS, SplitName, dataset_prefix, decode_manifest, labels_of
from autovision.evaluate import SplitPredictions, confusion_matrix_csv, evaluate_predictions, softmax, variant_metrics
from autovision.evaluate.metrics import DEFAULT_SCORE_THRESHOLD
from autovision.export.bundle import ExportedModel, export_model
from autovision.export.layout import (
    CONFUSION_MATRIX_FILE,
    EVALUATION_FILE,
    INT8_ONNX_FILE,
    MODEL_DIR,
    ONNX_FILE,
    REPORT_FILE,
    TEST_PREDICTIONS_FILE,
    TORCHSCRIPT_FILE,
    ModelLocation,
)
from autovision.export.layout import MODEL_CARD as MODEL_CARD_FILE
from autovision.preprocess import PreprocessConfig
from autovision.progress import Reporter
from autovision.report import render_report, thumbnail_data_uri
from autovision.serving.cluster import write_cluster_repository
from autovision.serving.repository import write_local_repository
from autovision.storage import Storage, StorageError, read_uris
from autovision.train.trainer import (
    EpochResult,
    SplitData,
    TrainConfig,
    TrialCheckpoint,
    TrialResult,
    load_split,
    predict_logits,
    train_trial,
)

MODEL_CARD = f"{MODEL_DIR}/{MODEL_CARD_FILE}"
TRITON_LOCAL = "triton"
TRITON_CLUSTER = "triton-cluster"
TASK = "SingleLabel"


@dataclass(frozen=True)
class RunLocation:
    """Where one TrainingJob run lives: ``runs/<namespace>/<job>/<uid>``."""

    namespace: str
    job: str
    uid: str

    @property
    def prefix(self) -> str:
        """The run's storage prefix."""
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
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> dict[str, Any]:
    """Train, evaluate on the test split, export three formats and two Triton repositories.

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
    splits: dict[SplitName, SplitData] = {}
    for done, split in enumerate(SPLITS, start=1):
        splits[split] = load_split(records, labels, split, preprocess, storage)
        reporter.update(done, f"{split}: {len(splits[split].targets)} images")
    trial = _train(
        storage,
        run,
        reporter,
        splits,
        num_classes=len(labels),
        config=config,
        budget_milli_node_hours=budget_milli_node_hours,
    )

    model_dir = ModelLocation(storage, f"{run.prefix}/{MODEL_DIR}")
    reporter.stage("Evaluating on the test split", total=1)
    predictions = score_test_split(trial, splits["test"], labels)
    storage.write_bytes(model_dir.key(TEST_PREDICTIONS_FILE), predictions.to_npz())
    evaluation = evaluate_predictions(predictions, score_threshold=score_threshold)
    reporter.update(1, f"test accuracy {evaluation['accuracy']:.3f}")

    reporter.stage("Exporting ONNX, TorchScript, int8 ONNX and Triton repositories", total=3)
    with tempfile.TemporaryDirectory(prefix="autovision-export-") as workdir:
        calibration = splits["validation"] if len(splits["validation"].targets) else splits["train"]
        exported = export_model(trial.model, splits["test"].inputs, calibration.inputs, Path(workdir) / "model")
        for path in (exported.onnx, exported.torchscript, exported.int8_onnx):
            storage.write_bytes(model_dir.key(path.name), path.read_bytes())
        reporter.update(1, f"ONNX parity max |diff| {exported.parity['onnx'].max_abs_diff:.2e}")
        evaluation["int8"] = variant_metrics(predictions, softmax(exported.int8_logits), score_threshold)
        facts = report_facts(dataset, version, run, config, trial)
        write_evaluation_files(storage, model_dir, evaluation, f"AutoVision model {run.job}", facts)
        reporter.update(2, f"int8 test accuracy {evaluation['int8']['accuracy']:.3f}")
        write_triton_repositories(storage, run, exported.onnx, labels, preprocess=preprocess, workdir=Path(workdir))
        reporter.update(3, "Triton repositories written")

    card = model_card(
        dataset=dataset,
        version=version,
        labels=labels,
        config=config,
        preprocess=preprocess,
        trial=trial,
        evaluation=evaluation,
        exported=exported,
        budget_milli_node_hours=budget_milli_node_hours,
        artifacts=artifact_uris(storage, run, model_dir),
    )
    storage.write_json(f"{run.prefix}/{MODEL_CARD}", card)
    write_progress(
        storage,
        run,
        phase="Succeeded",
        trials={"done": 1, "running": 0, "pruned": 0},
        best=_best(trial.best_validation_accuracy),
        milliNodeHoursUsed=card["milliNodeHoursUsed"],
        artifacts=card["artifacts"],
    )
    return card


def _best(value: float) -> dict[str, Any]:
    return {"trial": 0, "architecture": "residual_cnn", "metric": "validationAccuracy", "value": value}


def _train(
    storage: Storage,
    run: RunLocation,
    reporter: Reporter,
    splits: dict[SplitName, SplitData],
    *,
    num_classes: int,
    config: TrainConfig,
    budget_milli_node_hours: int | None,
) -> TrialResult:
    def on_epoch(result: EpochResult) -> None:
        reporter.update(result.epoch, f"validation accuracy {result.validation_accuracy:.3f}")
        write_progress(
            storage,
            run,
            phase="Searching",
            trials={"done": 0, "running": 1, "pruned": 0},
            best=_best(result.validation_accuracy),
            milliNodeHoursUsed=_milli_node_hours(result.seconds_used),
        )

    reporter.stage("Training trial 0", total=config.epochs)
    return train_trial(
        splits["train"],
        splits["validation"],
        num_classes,
        config,
        checkpoint=TrialCheckpoint(storage, f"{run.prefix}/trials/0/checkpoint.pt"),
        on_epoch=on_epoch,
        max_seconds=None if budget_milli_node_hours is None else budget_milli_node_hours * 3.6,
    )


def score_test_split(trial: TrialResult, test: SplitData, labels: list[str]) -> SplitPredictions:
    """The trained model's softmax scores on every test image, with their URIs and true labels."""
    probabilities = softmax(predict_logits(trial.model, test.inputs))
    return SplitPredictions.single_label(labels, test.uris, test.targets.numpy(), probabilities)


def report_facts(
    dataset: str, version: str, run: RunLocation, config: TrainConfig, trial: TrialResult
) -> list[tuple[str, str]]:
    """The report's header lines: what was trained on what, for how long."""
    return [
        ("dataset", f"{dataset} {version}"),
        ("run", run.prefix),
        ("architecture", json.dumps(config.architecture.describe())),
        ("epochs", f"{len(trial.history)} trained, best {trial.best_epoch}"),
        ("training time", f"{trial.seconds_used:.1f} s ({_milli_node_hours(trial.seconds_used)} milli node-hours)"),
        ("created", _now()),
    ]


def write_evaluation_files(
    storage: Storage,
    model_dir: ModelLocation,
    evaluation: dict[str, Any],
    title: str,
    facts: list[tuple[str, str]],
) -> None:
    """evaluation.json, confusion_matrix.csv and report.html (with thumbnails of the top mistakes)."""
    storage.write_json(model_dir.key(EVALUATION_FILE), evaluation)
    storage.write_bytes(model_dir.key(CONFUSION_MATRIX_FILE), confusion_matrix_csv(evaluation).encode())
    report = render_report(evaluation, title=title, facts=facts, thumbnails=mistake_thumbnails(storage, evaluation))
    storage.write_bytes(model_dir.key(REPORT_FILE), report.encode())


def mistake_thumbnails(storage: Storage, evaluation: dict[str, Any]) -> dict[str, str]:
    """Data URIs of the top mistakes' images; none when the dataset's images cannot be read."""
    uris = [mistake["uri"] for mistake in evaluation["mostConfidentMistakes"]]
    try:
        images = read_uris(uris, storage.settings)
    except StorageError:  # the report is still worth writing without pictures
        return {}
    thumbnails = {uri: thumbnail_data_uri(data) for uri, data in zip(uris, images, strict=True)}
    return {uri: thumbnail for uri, thumbnail in thumbnails.items() if thumbnail}


def write_triton_repositories(
    storage: Storage,
    run: RunLocation,
    onnx_path: Path,
    labels: list[str],
    *,
    preprocess: PreprocessConfig,
    workdir: Path,
) -> None:
    """Both Triton layouts, each replacing whatever a previous attempt left under its prefix."""
    write_local_repository(workdir / TRITON_LOCAL, onnx_path, labels, preprocess)
    write_cluster_repository(workdir / TRITON_CLUSTER, onnx_path, labels, preprocess)
    for prefix in (TRITON_LOCAL, TRITON_CLUSTER):
        storage.delete_prefix(f"{run.prefix}/{prefix}")
        storage.upload_dir(workdir / prefix, f"{run.prefix}/{prefix}")


def artifact_uris(storage: Storage, run: RunLocation, model_dir: ModelLocation) -> dict[str, str]:
    """Where the run's outputs are; ``model``, ``evaluation``, ``report`` and ``tritonRepository`` feed status."""
    return {
        "model": model_dir.uri(),
        "onnx": model_dir.uri(ONNX_FILE),
        "torchscript": model_dir.uri(TORCHSCRIPT_FILE),
        "int8Onnx": model_dir.uri(INT8_ONNX_FILE),
        "evaluation": model_dir.uri(EVALUATION_FILE),
        "testPredictions": model_dir.uri(TEST_PREDICTIONS_FILE),
        "confusionMatrix": model_dir.uri(CONFUSION_MATRIX_FILE),
        "report": model_dir.uri(REPORT_FILE),
        "tritonRepository": storage.uri(f"{run.prefix}/{TRITON_LOCAL}"),
        "tritonClusterRepository": storage.uri(f"{run.prefix}/{TRITON_CLUSTER}"),
    }


def model_card(
    *,
    dataset: str,
    version: str,
    labels: list[str],
    config: TrainConfig,
    preprocess: PreprocessConfig,
    trial: TrialResult,
    evaluation: dict[str, Any],
    exported: ExportedModel,
    budget_milli_node_hours: int | None,
    artifacts: dict[str, str],
) -> dict[str, Any]:
    """model.json: what the model is, what it was trained on, how good it is and where its files are."""
    return {
        "task": TASK,
        "architecture": config.architecture.describe(),
        "training": config.describe(),
        "inputSize": preprocess.size,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "preprocessing": "decode, convert to RGB, bilinear resize to inputSize x inputSize, "
        "scale to [0, 1], normalise with mean and std, NCHW float32",
        "labels": labels,
        "dataset": {"name": dataset, "version": version},
        "metrics": {
            "testAccuracy": evaluation["accuracy"],
            "testAveragePrecision": evaluation["averagePrecision"]["micro"],
            "testLogLoss": evaluation["logLoss"],
            "int8TestAccuracy": evaluation["int8"]["accuracy"],
            "scoreThreshold": evaluation["scoreThreshold"],
            "validationAccuracy": trial.best_validation_accuracy,
            "bestEpoch": trial.best_epoch,
            "epochsTrained": len(trial.history),
        },
        "exports": {
            "onnx": {"file": ONNX_FILE, "opset": exported.onnx_opset, "dynamicBatch": True},
            "torchscript": {"file": TORCHSCRIPT_FILE},
            "int8Onnx": {"file": INT8_ONNX_FILE, "quantization": "static QDQ, per-channel int8 weights"},
        },
        "parity": {name: report.to_json() for name, report in exported.parity.items()},
        "milliNodeHoursUsed": _milli_node_hours(trial.seconds_used),
        "budgetMilliNodeHours": budget_milli_node_hours,
        "trainingSeconds": round(trial.seconds_used, 2),
        "artifacts": artifacts,
        "createdAt": _now(),
    }
