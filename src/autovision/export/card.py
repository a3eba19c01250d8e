"""What a finished run says about itself: model.json, where its files are, and report.html's header.

Built here, written by the pipeline: the model card (``model/model.json``) is
written last and closes a run; what it holds is ``autovision.contract.files.ModelCard``.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from autovision.contract.files import BaseModelRecord, DatasetVersionRef, FinalFit, ModelCard, ModelMetrics, now_iso
from autovision.contract.keys import (
    CONFUSION_MATRIX_FILE,
    EVALUATION_FILE,
    INT8_ONNX_FILE,
    ONNX_FILE,
    REPORT_FILE,
    TEST_PREDICTIONS_FILE,
    TORCHSCRIPT_FILE,
    TRITON_CLUSTER,
    TRITON_LOCAL,
    RunLocation,
    triton_key,
)
from autovision.export.bundle import ExportedModel
from autovision.export.layout import ModelLocation
from autovision.resources import OptimizeFor, Task
from autovision.search.budget import milli_node_hours
from autovision.search.final import FinalModel
from autovision.search.summary import SearchResult
from autovision.storage import Storage


def _used_seconds(result: SearchResult, final: FinalModel) -> float:
    return result.seconds + final.seconds


def report_facts(
    dataset: str, version: str, run: RunLocation, result: SearchResult, final: FinalModel
) -> list[tuple[str, str]]:
    """The report's header lines: what was trained on what, how it was chosen, for how long."""
    seconds = _used_seconds(result, final)
    refit = "retrained on train + validation" if final.refit else "trained on train"
    return [
        ("dataset", f"{dataset} {version}"),
        ("run", run.prefix),
        ("architecture", json.dumps(result.candidate.config.architecture.describe())),
        ("input size", f"{result.candidate.preprocess.size} px"),
        ("search", f"{len(result.trials)} trials, stopped: {result.stop_reason}; chose trial {result.chosen.number}"),
        ("epochs", f"{final.epochs_trained} ({refit})"),
        ("training time", f"{seconds:.1f} s ({milli_node_hours(seconds)} milli node-hours)"),
        ("created", now_iso()),
    ]


def artifact_uris(storage: Storage, run: RunLocation, model_dir: ModelLocation, multi_label: bool) -> dict[str, str]:
    """Where the run's outputs are; ``model``, ``evaluation``, ``report`` and ``tritonRepository`` feed status."""
    uris = {
        "model": model_dir.uri(),
        "onnx": model_dir.uri(ONNX_FILE),
        "torchscript": model_dir.uri(TORCHSCRIPT_FILE),
        "int8Onnx": model_dir.uri(INT8_ONNX_FILE),
        "evaluation": model_dir.uri(EVALUATION_FILE),
        "testPredictions": model_dir.uri(TEST_PREDICTIONS_FILE),
        "confusionMatrix": model_dir.uri(CONFUSION_MATRIX_FILE),
        "report": model_dir.uri(REPORT_FILE),
        "tritonRepository": storage.uri(triton_key(run.prefix, TRITON_LOCAL)),
        "tritonClusterRepository": storage.uri(triton_key(run.prefix, TRITON_CLUSTER)),
    }
    if multi_label:  # no confusion matrix: labels are not exclusive
        del uris["confusionMatrix"]
    return uris


def model_card(
    *,
    dataset: str,
    version: str,
    labels: list[str],
    multi_label: bool,
    result: SearchResult,
    final: FinalModel,
    evaluation: dict[str, Any],
    exported: ExportedModel,
    budget_milli_node_hours: int | None,
    optimize_for: OptimizeFor,
    artifacts: dict[str, str],
    run: RunLocation,
    base_model: BaseModelRecord | None = None,
) -> ModelCard:
    """model.json: what the model is, what it was trained on (and from which base model, if any), how it was
    chosen, how good it is, where its files are."""
    candidate, chosen = result.candidate, result.chosen
    preprocess = candidate.preprocess
    seconds = _used_seconds(result, final)
    return ModelCard(
        task=Task.MULTI_LABEL if multi_label else Task.SINGLE_LABEL,
        architecture=candidate.config.architecture.describe(),
        training=candidate.config.describe(),
        input_size=preprocess.size,
        mean=preprocess.mean,
        std=preprocess.std,
        preprocessing="decode, convert to RGB, bilinear resize to inputSize x inputSize, "
        "scale to [0, 1], normalise with mean and std, NCHW float32",
        labels=labels,
        dataset=DatasetVersionRef(name=dataset, version=version),
        metrics=ModelMetrics(
            test_accuracy=evaluation["accuracy"],
            test_average_precision=evaluation["averagePrecision"]["micro"],
            test_log_loss=evaluation["logLoss"],
            int8_test_accuracy=evaluation["int8"]["accuracy"],
            score_threshold=evaluation["scoreThreshold"],
            validation_metric=result.metric,
            validation_value=chosen.value,
            validation_accuracy=None if multi_label else chosen.value,
            best_epoch=final.epochs_trained if final.refit else chosen.best_epoch,
            epochs_trained=final.epochs_trained,
            latency_ms=chosen.latency_ms,
            parameters=chosen.parameters,
        ),
        exports={
            "onnx": {"file": ONNX_FILE, "opset": exported.onnx_opset, "dynamicBatch": True},
            "torchscript": {"file": TORCHSCRIPT_FILE},
            "int8Onnx": {"file": INT8_ONNX_FILE, "quantization": "static QDQ, per-channel int8 weights"},
        },
        parity={name: report.to_json() for name, report in exported.parity.items()},
        search=result.to_json(optimize_for),
        final_fit=FinalFit(
            trial=chosen.number,
            retrained=final.refit,
            seconds=round(final.seconds, 2),
            checkpoint=posixpath.relpath(final.checkpoint, run.prefix),
        ),
        milli_node_hours_used=milli_node_hours(seconds),
        budget_milli_node_hours=budget_milli_node_hours,
        training_seconds=round(seconds, 2),
        artifacts=artifacts,
        base_model=base_model,
    )
