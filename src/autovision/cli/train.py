"""``autovision train``: search for the best model a budget buys, on the local runtime."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autovision.cli._console import RichReporter, console, errors, fail, progress_display
from autovision.contract.trainer_args import trainer_help
from autovision.resources import Backbone, EdgeFormat, EdgePreset, OptimizeFor, TrainingTarget, search_trade_off

if TYPE_CHECKING:
    from autovision.contract.files import ModelCard
    from autovision.progress import Reporter
    from autovision.storage import Storage

app = typer.Typer()

TRIAL_COLUMNS = ("id", "architecture", "resolution", "epochs", "metric", "latency ms", "state")
EDGE_TRIAL_COLUMNS = (*TRIAL_COLUMNS[:6], "tflite KB", TRIAL_COLUMNS[6])
"""An Edge target's trials also show their .tflite size."""


@app.command(name="train")
def train_command(
    *,
    dataset: Annotated[str, typer.Option(help="Dataset name; its latest imported version is trained on.")],
    budget_milli_node_hours: Annotated[int, typer.Option(min=1, help=trainer_help("budget_milli_node_hours"))],
    optimize_for: Annotated[
        OptimizeFor | None,
        typer.Option(case_sensitive=False, help=trainer_help("optimize_for") + " Default Balanced."),
    ] = None,
    target: Annotated[
        TrainingTarget, typer.Option(case_sensitive=False, help=trainer_help("target"))
    ] = TrainingTarget.CLOUD,
    edge_preset: Annotated[
        EdgePreset | None,
        typer.Option(
            case_sensitive=False,
            help="With --target edge, AutoML Vision Edge's presets: HigherAccuracy (--optimize-for HighAccuracy), "
            "BestTradeOff (Balanced) or FasterPredictions (LowLatency). Not with --optimize-for.",
        ),
    ] = None,
    early_stopping: Annotated[
        bool, typer.Option("--early-stopping/--no-early-stopping", help=trainer_help("early_stopping"))
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the search and of every trial.")] = 0,
    backbone: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=ARCH@URI",
            help="Also search this backbone with your own weights: ARCH is resnet18, resnet34, resnet50 or "
            "resnet101, URI a torchvision state_dict (file:// or s3://). Repeatable.",
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help=trainer_help("nproc") + " Here: CPU processes (gloo), at most the available cores; the global "
            "batch and learning rate stay the chosen trial's, each process trains on batch / N.",
        ),
    ] = 1,
    export_formats: Annotated[
        str,
        typer.Option(
            metavar="FORMAT,...",
            help="Also write these edge formats beside ONNX, TorchScript and int8 ONNX: tflite, tflite-int8, coreml, "
            "executorch "
            "(comma-separated; the edge extra must be installed, and for executorch its venv).",
        ),
    ] = "",
    executorch_venv: Annotated[
        Path, typer.Option(help="The venv scripts/setup-executorch.sh creates (--export-formats executorch).")
    ] = Path(".venv-executorch"),
    base_model: Annotated[
        str | None,
        typer.Option(
            metavar="RUN",
            help=trainer_help("base_model") + " A base that does not fit exits with status 2, writing nothing.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON summary object instead of tables.")] = False,
) -> None:
    """Search architectures and hyperparameters within a budget, then evaluate and export the chosen model.

    Running the same command again continues an interrupted search, or shows the finished one.
    """
    from autovision.contract import exit_codes
    from autovision.contract.keys import RunLocation
    from autovision.data.inspection import available_cores
    from autovision.export.edge import EdgeUnavailableError
    from autovision.pipeline import train_evaluate_export, train_run_uid
    from autovision.search.base_model import BaseModelError, find_base_model
    from autovision.search.job import SearchSettings
    from autovision.search.probe import BudgetTooSmallError
    from autovision.storage import Storage, StorageError
    from autovision.train.distributed import check_nproc
    from autovision.train.models import BackboneWeightsError

    try:
        check_nproc(nproc, available_cores())
        backbones = [Backbone.parse(text) for text in backbone or []]
        edge_formats = parse_edge_formats(export_formats)
        trade_off = search_trade_off(target, edge_preset, optimize_for)
    except ValueError as error:
        fail(escape(str(error)))
    settings = SearchSettings(
        optimize_for=trade_off, target=target, early_stopping=early_stopping, seed=seed, final_processes=nproc
    )
    try:
        storage = Storage.from_settings()
        version = _latest_version(storage, dataset)
        base = None if base_model is None else find_base_model(base_model, storage.settings)
        uid = train_run_uid(
            version,
            budget_milli_node_hours,
            trade_off.value,
            early_stopping=early_stopping,
            seed=seed,
            backbones=backbone or [],
            base_uri=None if base is None else base.uri,
            target=target,
        )
        run = RunLocation("local", dataset, uid)
        with _reporter(quiet=as_json) as reporter:
            card = train_evaluate_export(
                storage,
                dataset,
                version,
                run,
                reporter,
                budget_milli_node_hours=budget_milli_node_hours,
                search=settings,
                backbones=backbones,
                edge_formats=edge_formats,
                executorch_venv=executorch_venv,
                base_model=base,
            )
    except BaseModelError as error:
        fail(escape(str(error)), code=exit_codes.BAD_INPUT)
    except KeyboardInterrupt:
        errors.print("interrupted: finished trials are kept; run the same command again to continue")
        raise typer.Exit(code=130) from None
    except (StorageError, BackboneWeightsError, BudgetTooSmallError, EdgeUnavailableError) as error:
        fail(escape(str(error)))
    if as_json:
        sys.stdout.write(json.dumps(summary(card, run.prefix)) + "\n")
        return
    console.print(trials_table(card))
    console.print(summary_table(card, run.prefix))


def parse_edge_formats(text: str) -> list[EdgeFormat]:
    """``--export-formats``' comma-separated names as formats; ValueError naming the unknown ones and the choices."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in set(EdgeFormat)]
    if unknown:
        raise ValueError(
            f"--export-formats: unknown {', '.join(unknown)}; choose from {', '.join(EdgeFormat)} "
            "(ONNX, TorchScript and int8 ONNX are always written)"
        )
    return [EdgeFormat(name) for name in dict.fromkeys(names)]


@contextmanager
def _reporter(*, quiet: bool) -> Iterator[Reporter]:
    """Progress bars with the current best; nothing on the terminal for ``--json``."""
    from autovision.progress import LogReporter

    if quiet:
        yield LogReporter()
        return
    with progress_display() as progress:
        yield RichReporter(progress)


def _latest_version(storage: Storage, dataset: str) -> str:
    from autovision.contract.files import LatestVersion
    from autovision.contract.keys import latest_key
    from autovision.storage import StorageError

    key = latest_key(dataset)
    if not storage.exists(key):
        raise StorageError(f"dataset {dataset!r} has no imported version: run `autovision dataset import` first")
    return LatestVersion.model_validate(storage.read_json(key)).version


def summary(card: ModelCard, prefix: str) -> dict[str, Any]:
    """The ``--json`` object: the chosen model, its metrics, the budget, the front and every trial."""
    search = card.search
    return {
        "run": prefix,
        "dataset": card.dataset.to_json(),
        "optimizeFor": search["optimizeFor"],
        "target": search.get("target", "Cloud"),
        "latencyMethod": search.get("latencyMethod"),
        "chosenTrial": search["chosenTrial"],
        "architecture": card.architecture,
        "inputSize": card.input_size,
        "metrics": card.metrics.to_json(),
        "milliNodeHoursUsed": card.milli_node_hours_used,
        "budgetMilliNodeHours": card.budget_milli_node_hours,
        "stopReason": search["stopReason"],
        "paretoFront": search["paretoFront"],
        "trials": search["trials"],
        "artifacts": card.artifacts,
    }


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _kilobytes(size: int | None) -> str:
    return "-" if size is None else f"{size / 1000:.1f}"


def _is_edge(search: dict[str, Any]) -> bool:
    return bool(search.get("target") == TrainingTarget.EDGE.value)


def trials_table(card: ModelCard) -> Table:
    """Every trial: id, architecture, resolution, epochs, metric, latency (LiteRT's for an Edge target, with the
    .tflite size) and state (the chosen one marked)."""
    search = card.search
    edge = _is_edge(search)
    front = {point["trial"] for point in search["paretoFront"]}
    latency = "LiteRT, one CPU thread" if edge else "PyTorch, batch 1"
    title = f"Trials ({search['metric']} on validation; latency: {latency}; * on the Pareto front)"
    table = Table(*(EDGE_TRIAL_COLUMNS if edge else TRIAL_COLUMNS), title=title)
    for trial in search["trials"]:
        marker = " (chosen)" if trial["trial"] == search["chosenTrial"] else ""
        size = [_kilobytes(trial.get("modelBytes"))] if edge else []
        table.add_row(
            f"{trial['trial']}{'*' if trial['trial'] in front else ''}",
            str(trial["architecture"] or "-"),
            str(trial["resolution"] or "-"),
            f"{trial['epochsTrained']}/{trial['epochs'] or '-'}",
            _number(trial["value"], 4),
            _number(trial["latencyMs"], 2),
            *size,
            f"{trial['state']}{marker}",
        )
    return table


def summary_table(card: ModelCard, prefix: str) -> Table:
    """The chosen model and what it cost."""
    metrics, search = card.metrics, card.search
    table = Table(title="AutoVision train", show_header=False)
    table.add_row("run", prefix)
    table.add_row("target", search.get("target", TrainingTarget.CLOUD.value))
    table.add_row("optimize for", search["optimizeFor"])
    table.add_row("chosen trial", f"{search['chosenTrial']}: {card.architecture['family']} at {card.input_size} px")
    table.add_row("test accuracy", f"{metrics.test_accuracy:.4f}")
    table.add_row(search["metric"], _number(metrics.validation_value, 4))
    if _is_edge(search):
        chosen = next(trial for trial in search["trials"] if trial["trial"] == search["chosenTrial"])
        table.add_row("LiteRT latency, one CPU thread", f"{_number(metrics.latency_ms, 2)} ms")
        table.add_row("model.tflite", f"{_kilobytes(chosen.get('modelBytes'))} KB")
    else:
        table.add_row("batch-1 latency", f"{_number(metrics.latency_ms, 2)} ms")
    table.add_row("search stopped", search["stopReason"])
    table.add_row("budget used", f"{card.milli_node_hours_used} of {card.budget_milli_node_hours} milli node-hours")
    table.add_row("model", card.artifacts["model"])
    return table
