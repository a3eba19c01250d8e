"""The local runtime's path from a dataset version to a servable model.

Each step reads its inputs from storage and writes its outputs there, and each
step's completion is a marker written last, so a run killed anywhere continues
where it stopped: the dataset version's manifest, the study journal and trial
checkpoints of the search, the final fit's plan and checkpoint, and the model
card (``model/model.json``) that closes a run.

The steps: the architecture and hyperparameter search inside the budget (or one
given configuration), the final fit of the chosen configuration on train +
validation as the budget allows, evaluation on the test split, exports and the
Triton repositories, and the model card with the trials table and Pareto front.

Where each of these lives is ``autovision.contract.keys``; what progress.json
and model.json hold is ``autovision.contract.files``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autovision.contract.files import (
    SUCCEEDED_PHASE,
    DatasetVersionRef,
    FinalFit,
    ImportReportSummary,
    ModelCard,
    ModelMetrics,
    Progress,
    now_iso,
)
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
    manifest_key,
    model_card_key,
    model_dir_key,
    report_key,
    triton_key,
)
from autovision.data.manifest import ImageRecord, decode_manifest, labels_of
from autovision.evaluate import (
    SplitPredictions,
    confusion_matrix_csv,
    evaluate_predictions,
    sigmoid,
    softmax,
    variant_metrics,
)
from autovision.evaluate.metrics import DEFAULT_SCORE_THRESHOLD
from autovision.export.bundle import ExportedModel, export_model
from autovision.export.layout import ModelLocation
from autovision.preprocess import FloatArray, PreprocessConfig
from autovision.progress import Reporter
from autovision.report import render_report, thumbnail_data_uri
from autovision.resources import Backbone, OptimizeFor, Task
from autovision.search.budget import milli_node_hours
from autovision.search.final import FinalModel, fit_final, pinned_plan
from autovision.search.job import ImageCache, SearchJob, SearchSettings
from autovision.search.nodes import run_node
from autovision.search.records import trial_counts, write_progress
from autovision.search.space import Candidate, DatasetProfile, FixedSpace, Space, space_for
from autovision.search.summary import SearchResult, summarise
from autovision.serving.cluster import write_cluster_repository
from autovision.serving.repository import write_local_repository
from autovision.storage import Storage, StorageError, read_uris
from autovision.train.images import ImageSet
from autovision.train.models import UserBackboneConfig, backbone_weights
from autovision.train.trainer import CPU, TrainConfig, image_logits


def run_uid(*parts: object) -> str:
    """A stable run id from what defines a run: same inputs, same run (so a rerun resumes it)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def local_run_uid(dataset_version: str, config: TrainConfig, preprocess: PreprocessConfig) -> str:
    """A stable run id for the local runtime's fixed-configuration runs (the quickstart)."""
    return run_uid(dataset_version, config.describe(), preprocess.to_json())


def is_multi_label(storage: Storage, dataset: str, version: str, records: list[ImageRecord]) -> bool:
    """The dataset version's task, from its import report (or its labels, for a version without one)."""
    key = report_key(dataset, version)
    if storage.exists(key):
        return ImportReportSummary.model_validate(storage.read_json(key)).task == Task.MULTI_LABEL
    return any(len(record.labels) > 1 for record in records)


def search_space(
    profile: DatasetProfile,
    *,
    config: TrainConfig | None,
    preprocess: PreprocessConfig | None,
    budget_milli_node_hours: int | None,
    settings: SearchSettings,
    backbones: Sequence[Backbone] = (),
) -> Space:
    """What the run trains: the settings' space; one configuration when it is given or there is no budget
    (the default one then); otherwise the dataset's search space, the user's backbones included."""
    if settings.space is not None:
        return settings.space
    if config is not None or budget_milli_node_hours is None:
        return FixedSpace(Candidate(config or TrainConfig(), preprocess or PreprocessConfig()))
    users = [UserBackboneConfig(backbone.name, backbone.architecture, backbone.weights_uri) for backbone in backbones]
    return space_for(profile, seed=settings.seed, preprocess=preprocess, backbones=users)


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
    search: SearchSettings | None = None,
    backbones: Sequence[Backbone] = (),
) -> ModelCard:
    """Search, fit the final model, evaluate on the test split, export three formats and two Triton repositories.

    With ``config`` (and optionally ``preprocess``) exactly that configuration is
    trained, once; without a config, the dataset's search space (with the user's
    ``backbones``) is searched within the budget (without a budget too, the
    default configuration is trained once). Returns the model card. A run whose
    model card exists is returned as is.
    """
    if storage.exists(model_card_key(run.prefix)):
        reporter.note(f"run {run.uid} already complete: reusing it")
        return ModelCard.model_validate(storage.read_json(model_card_key(run.prefix)))
    settings = search or SearchSettings()
    job = build_search_job(
        storage,
        dataset,
        version,
        run,
        config=config,
        preprocess=preprocess,
        budget_milli_node_hours=budget_milli_node_hours,
        settings=settings,
        backbones=backbones,
    )
    labels, multi_label = list(job.labels), job.multi_label
    images = ImageCache(job.records, job.labels, storage)
    result, final = search_and_fit(job, images, reporter)
    preprocess = result.candidate.preprocess
    test = images.split("test", preprocess.size).to(CPU)

    model_dir = ModelLocation(storage, model_dir_key(run.prefix))
    reporter.stage("Evaluating on the test split", total=1)
    predictions = score_test_split(final, test, labels, preprocess, multi_label)
    storage.write_bytes(model_dir.key(TEST_PREDICTIONS_FILE), predictions.to_npz())
    evaluation = evaluate_predictions(predictions, score_threshold=score_threshold)
    reporter.update(1, f"test accuracy {evaluation['accuracy']:.3f}")

    reporter.stage("Exporting ONNX, TorchScript, int8 ONNX and Triton repositories", total=3)
    with tempfile.TemporaryDirectory(prefix="autovision-export-") as workdir:
        validation = images.split("validation", preprocess.size)
        calibration = (validation if len(validation) else images.split("train", preprocess.size)).to(CPU)
        exported = export_model(
            final.model, test.inputs(preprocess), calibration.inputs(preprocess), Path(workdir) / "model"
        )
        for path in (exported.onnx, exported.torchscript, exported.int8_onnx):
            storage.write_bytes(model_dir.key(path.name), path.read_bytes())
        reporter.update(1, f"ONNX parity max |diff| {exported.parity['onnx'].max_abs_diff:.2e}")
        evaluation["int8"] = variant_metrics(predictions, activate(exported.int8_logits, multi_label), score_threshold)
        facts = report_facts(dataset, version, run, result, final)
        write_evaluation_files(storage, model_dir, evaluation, f"AutoVision model {run.job}", facts)
        reporter.update(2, f"int8 test accuracy {evaluation['int8']['accuracy']:.3f}")
        write_triton_repositories(
            storage,
            run,
            exported.onnx,
            labels,
            preprocess=preprocess,
            multi_label=multi_label,
            workdir=Path(workdir),
        )
        reporter.update(3, "Triton repositories written")

    card = model_card(
        dataset=dataset,
        version=version,
        labels=labels,
        multi_label=multi_label,
        result=result,
        final=final,
        evaluation=evaluation,
        exported=exported,
        budget_milli_node_hours=budget_milli_node_hours,
        optimize_for=settings.optimize_for,
        artifacts=artifact_uris(storage, run, model_dir, multi_label),
    )
    storage.write_json(model_card_key(run.prefix), card.to_json())
    progress = {
        "phase": SUCCEEDED_PHASE,
        "trials": trial_counts(result.trials),
        "best": {
            "trial": result.chosen.number,
            "architecture": result.candidate.architecture,
            "metric": result.metric,
            "value": result.chosen.value,
        },
        "milliNodeHoursUsed": card.milli_node_hours_used,
        "artifacts": card.artifacts,
    }
    write_progress(storage, run.prefix, Progress.model_validate(progress))
    return card


def build_search_job(
    storage: Storage,
    dataset: str,
    version: str,
    run: RunLocation,
    *,
    config: TrainConfig | None,
    preprocess: PreprocessConfig | None,
    budget_milli_node_hours: int | None,
    settings: SearchSettings,
    backbones: Sequence[Backbone] = (),
) -> SearchJob:
    """What a run's search works on: the dataset version's records, its task, and the space to search.

    The space's user backbones are read and checked here, so that a bad weights
    file fails the run with one clear error before any trial starts.
    """
    records = decode_manifest(storage.read_bytes(manifest_key(dataset, version)))
    labels = labels_of(records)
    multi_label = is_multi_label(storage, dataset, version, records)
    space = search_space(
        DatasetProfile.of(records, labels, multi_label),
        config=config,
        preprocess=preprocess,
        budget_milli_node_hours=budget_milli_node_hours,
        settings=settings,
        backbones=backbones,
    )
    for backbone in space.backbones:
        backbone_weights(backbone, storage.settings)
    return SearchJob(
        storage_root=storage.uri(""),
        storage_settings=storage.settings,
        prefix=run.prefix,
        records=tuple(records),
        labels=tuple(labels),
        multi_label=multi_label,
        space=space,
        budget_milli_node_hours=budget_milli_node_hours,
        settings=settings,
    )


def join_search(
    storage: Storage,
    dataset: str,
    version: str,
    run: RunLocation,
    reporter: Reporter,
    *,
    budget_milli_node_hours: int,
    search: SearchSettings,
    backbones: Sequence[Backbone] = (),
) -> None:
    """A node other than node 0 of a multi-node run: train trials of node 0's search until it ends.

    Node 0 (``train_evaluate_export``) then fits, evaluates and exports the model.
    """
    if not search.is_member_node:
        raise ValueError("join_search is for nodes other than node 0")
    job = build_search_job(
        storage,
        dataset,
        version,
        run,
        config=None,
        preprocess=None,
        budget_milli_node_hours=budget_milli_node_hours,
        settings=search,
        backbones=backbones,
    )
    run_node(job, ImageCache(job.records, job.labels, storage), reporter)


def search_and_fit(job: SearchJob, images: ImageCache, reporter: Reporter) -> tuple[SearchResult, FinalModel]:
    """Run (or finish) this node's part of the search, choose per optimizeFor, and fit the final model."""
    pinned = pinned_plan(images.storage, job.prefix)
    if pinned is None:  # with a plan written, the search is over and the final fit is under way
        run_node(job, images, reporter)
    result = summarise(job, images, None if pinned is None else pinned.trial)
    return result, fit_final(job, result, images, reporter)


def activate(logits: FloatArray, multi_label: bool) -> FloatArray:
    """Scores from logits: per-label sigmoid (multi-label) or softmax (single-label)."""
    return sigmoid(logits) if multi_label else softmax(logits)


def score_test_split(
    final: FinalModel, test: ImageSet, labels: list[str], preprocess: PreprocessConfig, multi_label: bool
) -> SplitPredictions:
    """The final model's scores on every test image, with their URIs and true labels."""
    scores = activate(image_logits(final.model, test, preprocess), multi_label)
    return SplitPredictions(labels=labels, uris=test.uris, truth=test.truth(), scores=scores, multi_label=multi_label)


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


def write_evaluation_files(
    storage: Storage,
    model_dir: ModelLocation,
    evaluation: dict[str, Any],
    title: str,
    facts: list[tuple[str, str]],
) -> None:
    """evaluation.json, confusion_matrix.csv (single-label) and report.html (with thumbnails of the top mistakes)."""
    storage.write_json(model_dir.key(EVALUATION_FILE), evaluation)
    if evaluation["confusionMatrix"] is not None:
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
    multi_label: bool,
    workdir: Path,
) -> None:
    """Both Triton layouts, each replacing whatever a previous attempt left under its prefix."""
    write_local_repository(workdir / TRITON_LOCAL, onnx_path, labels, preprocess, multi_label=multi_label)
    write_cluster_repository(workdir / TRITON_CLUSTER, onnx_path, labels, preprocess, multi_label=multi_label)
    for layout in (TRITON_LOCAL, TRITON_CLUSTER):
        storage.delete_prefix(triton_key(run.prefix, layout))
        storage.upload_dir(workdir / layout, triton_key(run.prefix, layout))


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
) -> ModelCard:
    """model.json: what the model is, what it was trained on, how it was chosen, how good it is, where its files are."""
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
        final_fit=FinalFit(trial=chosen.number, retrained=final.refit, seconds=round(final.seconds, 2)),
        milli_node_hours_used=milli_node_hours(seconds),
        budget_milli_node_hours=budget_milli_node_hours,
        training_seconds=round(seconds, 2),
        artifacts=artifacts,
    )
