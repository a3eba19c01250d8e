"""The local runtime's path from a dataset version to a servable model.

Each step reads its inputs from storage and writes its outputs there, and each
step's completion is a marker written last, so a run killed anywhere continues
where it stopped: the dataset version's index, the study journal and trial
checkpoints of the search, the final fit's plan and checkpoint, and the model
card (``model/model.json``) that closes a run.

The steps: the architecture and hyperparameter search inside the budget (or one
given configuration), the final fit of the chosen configuration on train +
validation as the budget allows, evaluation on the test split, exports and the
Triton repositories, each export measured (``autovision.export.measure``), and the
model card with the trials table and Pareto front.

This module only orchestrates the steps; their work is done elsewhere:
``autovision.search`` (the job, the workers, the summary, the final fit),
``autovision.evaluate.scoring`` and ``autovision.evaluate.files`` (the test
split's scores and the evaluation's files), ``autovision.export`` (the three
formats, and the model card in ``autovision.export.card``) and
``autovision.serving.publish`` (the Triton repositories). Where each output
lives is ``autovision.contract.keys``; what progress.json and model.json hold is
``autovision.contract.files``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autovision.contract.files import (
    BUDGET_TOO_SMALL_PHASE,
    SUCCEEDED_PHASE,
    ImportReportSummary,
    ModelCard,
    Progress,
)
from autovision.contract.keys import (
    DRIFT_REFERENCE_FILE,
    TEST_PREDICTIONS_FILE,
    RunLocation,
    model_card_key,
    model_dir_key,
    report_key,
    study_journal_key,
)
from autovision.data.manifest import SplitName
from autovision.data.record_table import RecordTable
from autovision.data.versions import open_version, read_version
from autovision.evaluate import activate, evaluate_predictions, variant_metrics
from autovision.evaluate.explanations import ReportExplanations, explain_test_images
from autovision.evaluate.files import write_evaluation_files
from autovision.evaluate.formats import FormatRun, format_figures
from autovision.evaluate.metrics import DEFAULT_SCORE_THRESHOLD
from autovision.evaluate.predictions import SplitPredictions
from autovision.evaluate.scoring import score_split
from autovision.evaluate.split_images import SplitImages
from autovision.export.bundle import ExportedModel, export_model
from autovision.export.card import artifact_uris, model_card, report_facts
from autovision.export.edge import check_edge_formats, store_edge_formats
from autovision.export.edge_files import CALIBRATION_IMAGES, EdgeInput
from autovision.export.executorch_export import DEFAULT_VENV as DEFAULT_EXECUTORCH_VENV
from autovision.export.layout import ModelLocation
from autovision.export.measure import run_edge, run_onnx
from autovision.monitor.reference import DriftReference
from autovision.preprocess import FloatArray, PreprocessConfig
from autovision.progress import Reporter
from autovision.resources import Backbone, EdgeFormat, Task, TrainingTarget
from autovision.search.base_model import BaseModel, BaseModelError, check_fits, keep_base_weights
from autovision.search.budget import milli_node_hours
from autovision.search.final import FinalModel, fit_final, join_final_fit, pinned_plan
from autovision.search.job import ImageCache, SearchJob, SearchSettings, search_space
from autovision.search.nodes import coordinator_serving, run_node
from autovision.search.probe import BudgetTooSmallError, plan_first_trial
from autovision.search.records import trial_counts, write_progress
from autovision.search.retrain_space import RetrainSpace
from autovision.search.space import DatasetProfile, Space
from autovision.search.summary import SearchResult, summarise
from autovision.search.trial_latency import check_target
from autovision.serving.publish import write_triton_repositories
from autovision.storage import Storage
from autovision.train.families import family_of
from autovision.train.models import backbone_weights
from autovision.train.trainer import CPU, TrainConfig
from autovision.train.warm_start import initial_weights


def run_uid(*parts: object) -> str:
    """A stable run id from what defines a run: same inputs, same run (so a rerun resumes it)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def train_run_uid(
    version: str,
    budget_milli_node_hours: int,
    optimize_for: str,
    *,
    early_stopping: bool,
    seed: int,
    backbones: Sequence[str] = (),
    base_uri: str | None = None,
    target: TrainingTarget = TrainingTarget.CLOUD,
) -> str:
    """The id of an ``autovision train`` run (the console's runs too): backbones, a base and an Edge target make
    a run of their own; without them, run ids stay as they were before any existed."""
    parts = [*backbones, *([] if base_uri is None else ["base", base_uri])]
    parts += [] if target is TrainingTarget.CLOUD else ["target", target.value]
    return run_uid(version, budget_milli_node_hours, optimize_for, early_stopping, seed, *parts)


def local_run_uid(dataset_version: str, config: TrainConfig, preprocess: PreprocessConfig) -> str:
    """A stable run id for the local runtime's fixed-configuration runs (the quickstart)."""
    return run_uid(dataset_version, config.describe(), preprocess.to_json())


def is_multi_label(storage: Storage, dataset: str, version: str, records: RecordTable) -> bool:
    """The dataset version's task, from its import report (or its labels, for a version without one)."""
    key = report_key(dataset, version)
    if storage.exists(key):
        return ImportReportSummary.model_validate(storage.read_json(key)).task == Task.MULTI_LABEL
    return records.multi_label()


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
    edge_formats: Sequence[EdgeFormat] = (),
    executorch_venv: Path = DEFAULT_EXECUTORCH_VENV,
    base_model: BaseModel | None = None,
) -> ModelCard:
    """Search, fit the final model, evaluate on the test split, export three formats and two Triton repositories.

    With ``config`` (and optionally ``preprocess``) exactly that configuration is
    trained, once; without a config, the dataset's search space (with the user's
    ``backbones``) is searched within the budget (without a budget too, the
    default configuration is trained once). With a ``base_model`` (a finished
    run, ``autovision.search.base_model.find_base_model``) every trial continues
    from its final weights and only the learning rate and epochs are searched
    (``autovision.search.retrain_space``); a base whose labels or task are not
    the dataset's raises BaseModelError before anything is written. Then each of
    ``edge_formats`` is written (tflite too for an Edge target, ``search.target``, whose
    trials are timed in LiteRT); ``EdgeUnavailableError`` before any training when one
    cannot be here, and one that fails on the model is reported and leaves the others
    and the run unaffected. Every file written (ONNX, int8 ONNX, each edge format) is
    then run on the test split for evaluation.json's ``formats`` and the report's
    table (size, one-thread latency, top-1, agreement). Returns the model card. A run
    whose model card exists is returned as is.
    """
    if storage.exists(model_card_key(run.prefix)):
        reporter.note(f"run {run.uid} already complete: reusing it")
        return ModelCard.model_validate(storage.read_json(model_card_key(run.prefix)))
    settings = search or SearchSettings()
    check_target(settings.target)
    edge_formats = settings.target.export_formats(edge_formats)
    check_edge_formats(edge_formats, executorch_venv)
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
        base_model=base_model,
    )
    labels, multi_label = list(job.labels), job.multi_label
    images = ImageCache(job.records, job.labels, storage)
    result, final = search_and_fit(job, images, reporter)
    preprocess = result.candidate.preprocess
    final_model = final.model.to(CPU)
    index = open_version(storage, dataset, version)
    test = SplitImages(index, "test", labels, preprocess.size, storage)

    model_dir = ModelLocation(storage, model_dir_key(run.prefix))
    predictions, evaluation, explained = _evaluate_test_split(
        final_model, result, test, model_dir, reporter, multi_label=multi_label, score_threshold=score_threshold
    )

    reporter.stage("Exporting ONNX, TorchScript, int8 ONNX and Triton repositories", total=3)
    with tempfile.TemporaryDirectory(prefix="autovision-export-") as workdir:
        calibration_split: SplitName = "validation" if index.count("validation") else "train"
        calibration = SplitImages(index, calibration_split, labels, preprocess.size, storage, limit=CALIBRATION_IMAGES)
        test_inputs = test.inputs(preprocess)
        exported = export_model(
            final_model,
            family_of(result.candidate.config.architecture),
            test_inputs,
            calibration.inputs(preprocess),
            Path(workdir) / "model",
        )
        for path in (exported.onnx, exported.torchscript, exported.int8_onnx):
            storage.write_bytes(model_dir.key(path.name), path.read_bytes())
        embedded = len(exported.test_embeddings)
        reference = DriftReference.of_test_split(labels, predictions.scores[:embedded], exported.test_embeddings)
        storage.write_bytes(model_dir.key(DRIFT_REFERENCE_FILE), reference.to_npz())
        reporter.update(1, f"ONNX parity max |diff| {exported.parity['onnx'].max_abs_diff:.2e}")
        evaluation["int8"] = variant_metrics(predictions, activate(exported.int8_logits, multi_label), score_threshold)
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
        edge_files: dict[EdgeFormat, Path] = {}
        if edge_formats:
            spec = EdgeInput(labels=tuple(labels), size=preprocess.size, mean=preprocess.mean, std=preprocess.std)
            edge_files = _store_edge_formats(
                final,
                spec,
                edge_formats,
                _calibration_images(images, preprocess, edge_formats),
                model_dir=model_dir,
                venv=executorch_venv,
                reporter=reporter,
                workdir=workdir,
            )
        runs = _run_formats(exported, edge_files, test_inputs.arrays(), executorch_venv, reporter)
        evaluation["formats"] = [format_figures(each, predictions.truth, predictions.scores).to_json() for each in runs]
        facts = report_facts(dataset, version, run, result, final)
        title = f"AutoVision model {run.job}"
        write_evaluation_files(storage, model_dir, evaluation, title, facts, overlays=explained.overlays)

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
        run=run,
        base_model=None if base_model is None else base_model.record(),
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
            "latencyMs": result.chosen.latency_ms,
            "modelBytes": result.chosen.model_bytes,
        },
        "milliNodeHoursUsed": card.milli_node_hours_used,
        "searchMilliNodeHoursUsed": milli_node_hours(result.seconds),
        "finalFitMilliNodeHoursUsed": milli_node_hours(final.seconds),
        "artifacts": card.artifacts,
    }
    write_progress(storage, run.prefix, Progress.model_validate(progress))
    return card


def _evaluate_test_split(
    model: nn.Module,
    result: SearchResult,
    test: SplitImages,
    model_dir: ModelLocation,
    reporter: Reporter,
    *,
    multi_label: bool,
    score_threshold: float,
) -> tuple[SplitPredictions, dict[str, Any], ReportExplanations]:
    """Score the test split a batch at a time, keep its predictions, and explain its most confident mistakes."""
    reporter.stage("Evaluating on the test split", total=1)
    preprocess = result.candidate.preprocess
    predictions = score_split(model, test, preprocess, multi_label)
    model_dir.storage.write_bytes(model_dir.key(TEST_PREDICTIONS_FILE), predictions.to_npz())
    evaluation = evaluate_predictions(predictions, score_threshold=score_threshold)
    explained = explain_test_images(
        model,
        result.candidate.config.architecture.describe(),
        test.pixels_of,
        predictions,
        evaluation["mostConfidentMistakes"],
        preprocess=preprocess,
    )
    evaluation["explanations"] = explained.record.to_json()
    reporter.update(1, f"test accuracy {evaluation['accuracy']:.3f}")
    return predictions, evaluation, explained


def _store_edge_formats(
    final: FinalModel,
    spec: EdgeInput,
    formats: Sequence[EdgeFormat],
    training: torch.Tensor | None,
    *,
    model_dir: ModelLocation,
    venv: Path,
    reporter: Reporter,
    workdir: str,
) -> dict[EdgeFormat, Path]:
    reporter.stage(f"Exporting {', '.join(formats)}", total=len(formats))
    stored = store_edge_formats(
        final.model.to(CPU), spec, formats, model_dir, venv, workdir=Path(workdir) / "edge", calibration=training
    )
    for done, (fmt, written) in enumerate(stored.written.items(), start=1):
        reporter.update(done, f"{fmt}: {written.uri} ({written.size_bytes / 1e6:.2f} MB)")
    for fmt, reason in stored.failures.items():
        reporter.note(f"{fmt} not written: {reason}")
    return {fmt: written.path for fmt, written in stored.written.items()}


def _calibration_images(
    images: ImageCache, preprocess: PreprocessConfig, formats: Sequence[EdgeFormat]
) -> torch.Tensor | None:
    """The first training images as model input, for the formats calibrated on them (tflite-int8): never a
    validation or test image."""
    if EdgeFormat.TFLITE_INT8 not in formats:
        return None
    return next(images.split("train", preprocess.size).batches(preprocess, CALIBRATION_IMAGES)).cpu()


def _run_formats(
    exported: ExportedModel,
    edge_files: dict[EdgeFormat, Path],
    test_inputs: Iterable[FloatArray],
    executorch_venv: Path,
    reporter: Reporter,
) -> list[FormatRun]:
    """Each format the run wrote, run by its runtime on the test split (one thread, batch by batch: each run
    decodes the split again), for the report's table."""
    reporter.stage("Measuring each format on the test split, one thread", total=2 + len(edge_files))
    runs = [run_onnx("onnx", exported.onnx, test_inputs), run_onnx("int8 onnx", exported.int8_onnx, test_inputs)]
    reporter.update(2, f"ONNX {_latency_note(runs[0])}, int8 ONNX {_latency_note(runs[1])}")
    for fmt, path in edge_files.items():
        runs.append(run_edge(fmt, path, test_inputs, executorch_venv))
        reporter.update(len(runs), f"{fmt} {_latency_note(runs[-1])}")
    return runs


def _latency_note(run: FormatRun) -> str:
    return f"{statistics.median(run.latency_ms):.2f} ms median" if run.latency_ms else "not run here"


def _plan_first_trial(job: SearchJob, images: ImageCache, reporter: Reporter) -> SearchJob:
    try:
        return dataclasses.replace(job, space=plan_first_trial(job, images, reporter))
    except BudgetTooSmallError as error:
        refused = Progress(phase=BUDGET_TOO_SMALL_PHASE, minimum_budget_milli_node_hours=error.minimum)
        write_progress(images.storage, job.prefix, refused)
        raise


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
    base_model: BaseModel | None = None,
) -> SearchJob:
    """What a run's search works on: the dataset version's records, its task, and the space to search.

    The space's user backbones are read and checked here, so that a bad weights
    file fails the run with one clear error before any trial starts; so is a
    base model, whose final weights are then kept in the run (``base/weights.pt``).
    """
    records = read_version(storage, dataset, version)
    labels = records.label_set()
    multi_label = is_multi_label(storage, dataset, version, records)
    if base_model is None:
        space = search_space(
            DatasetProfile.of(records, labels, multi_label),
            config=config,
            preprocess=preprocess,
            budget_milli_node_hours=budget_milli_node_hours,
            settings=settings,
            backbones=backbones,
        )
    else:
        space = _retrain_space(
            storage, run, base_model, labels=labels, multi_label=multi_label, settings=settings, backbones=backbones
        )
    for backbone in space.backbones:
        backbone_weights(backbone, storage.settings)
    return SearchJob(
        storage_root=storage.uri(""),
        storage_settings=storage.settings,
        prefix=run.prefix,
        records=records,
        labels=tuple(labels),
        multi_label=multi_label,
        space=space,
        budget_milli_node_hours=budget_milli_node_hours,
        settings=settings,
    )


def _retrain_space(
    storage: Storage,
    run: RunLocation,
    base: BaseModel,
    *,
    labels: list[str],
    multi_label: bool,
    settings: SearchSettings,
    backbones: Sequence[Backbone],
) -> Space:
    """The space of a run continuing from ``base``, once it is checked to fit the dataset; its weights kept."""
    if backbones:
        raise BaseModelError("a run from a base model trains the base's architecture: it takes no backbones")
    check_fits(base, labels, multi_label)
    weights = keep_base_weights(base, storage, run.prefix)
    initial_weights(weights, storage.settings)  # read now, with the run's storage settings
    return settings.space or RetrainSpace(base.training(), base.preprocess(), weights, seed=settings.seed)


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
    base_model: BaseModel | None = None,
) -> None:
    """A node other than node 0 of a multi-node run: train trials of node 0's search until it ends.

    Node 0 (``train_evaluate_export``) then fits, evaluates and exports the model;
    with a rendezvous (``SearchSettings.final_fit_on_all_nodes``) this node stays
    and trains its ranks of the final fit. A node restarted after the search
    (node 0's plan written) goes straight to the final fit.
    """
    if not search.is_member_node:
        raise ValueError("join_search is for nodes other than node 0")
    check_target(search.target)
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
        base_model=base_model,
    )
    images = ImageCache(job.records, job.labels, storage)
    if pinned_plan(storage, job.prefix) is None:
        run_node(job, images, reporter)
    if search.final_fit_on_all_nodes:
        assert search.coordinator is not None  # SearchSettings checks it for several nodes
        coordinator = search.coordinator
        join_final_fit(job, images, reporter, lambda: coordinator_serving(coordinator))


def search_and_fit(job: SearchJob, images: ImageCache, reporter: Reporter) -> tuple[SearchResult, FinalModel]:
    """Run (or finish) this node's part of the search, choose per optimizeFor, and fit the final model.

    A new search first plans a first trial its budget can buy (a cheaper one
    than the warm start when the budget is small); a budget too small for any
    is refused (``BudgetTooSmallError``) before any training, and progress.json
    says so with the estimated minimum.
    """
    pinned = pinned_plan(images.storage, job.prefix)
    if pinned is None:  # with a plan written, the search is over and the final fit is under way
        if not images.storage.exists(study_journal_key(job.prefix)):
            job = _plan_first_trial(job, images, reporter)
        run_node(job, images, reporter)
    result = summarise(job, images, None if pinned is None else pinned.trial)
    return result, fit_final(job, result, images, reporter)
