"""``autovision dataset ...``: import and inspect datasets."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from autovision.cli._console import RichReporter, console, fail, progress_display

if TYPE_CHECKING:
    from autovision.data.importer import ImportResult
    from autovision.progress import Reporter
    from autovision.resources import Task
    from autovision.storage import Storage

app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)


class TaskChoice(StrEnum):
    """The ``--task`` values, in the CLI's spelling of the Dataset resource's task."""

    SINGLE_LABEL = "single-label"
    MULTI_LABEL = "multi-label"

    def resource_task(self) -> Task:
        """The resource model's Task this choice stands for."""
        from autovision.resources import Task

        return Task.MULTI_LABEL if self is TaskChoice.MULTI_LABEL else Task.SINGLE_LABEL


@app.command("import")
def dataset_import(  # noqa: PLR0917 - typer's options are the command's parameters
    source: Annotated[
        str,
        typer.Argument(help="Zip of label folders, CSV index ([SET,]URI,LABEL...) or folder/prefix: path or URI."),
    ],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    task: Annotated[TaskChoice, typer.Option(case_sensitive=False, help="One label per image, or any number.")] = (
        TaskChoice.SINGLE_LABEL
    ),
    add_to_previous: Annotated[
        bool,
        typer.Option(
            "--add-to-previous",
            help="Make the new version the dataset's latest version plus SOURCE's images (e.g. a labelled review "
            "CSV of logged images); the latest version's images keep their splits.",
        ),
    ] = False,
    slices: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            help="Worker processes the source is cut into, each validating and packing its slice; by default one "
            "per 512 MiB of a zip or CSV, at most one per core.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Validate, dedupe, split and version a dataset in AutoVision's storage."""
    from autovision.data.importer import DatasetImportError
    from autovision.storage import Storage, StorageError

    try:
        storage = Storage.from_settings()
        with nullcontext(None) if as_json else progress_display() as display:
            result = _import(
                source,
                name,
                storage,
                task=task.resource_task(),
                add_to_previous=add_to_previous,
                slices=slices,
                reporter=None if display is None else RichReporter(display),
            )
    except (DatasetImportError, StorageError) as error:
        fail(escape(str(error)))
    _show(result.report, as_json, reused=result.reused)


def _import(
    source: str,
    name: str,
    storage: Storage,
    *,
    task: Task,
    add_to_previous: bool,
    slices: int | None,
    reporter: Reporter | None,
) -> ImportResult:
    """One import, in slices on worker processes when asked or when the source is large."""
    from autovision.data.importer import DatasetImportError, import_dataset
    from autovision.data.slices import SlicedImport, default_slices, import_in_processes

    if add_to_previous:
        if (slices or 1) > 1:
            raise DatasetImportError("--add-to-previous imports in one process: leave out --slices")
        return import_dataset(source, name, storage, task=task, reporter=reporter, add_to_previous=True)
    slices = slices or default_slices(source, storage)
    if slices > 1:
        return import_in_processes(SlicedImport(source, name, slices, task=task), storage, reporter)
    return import_dataset(source, name, storage, task=task, reporter=reporter)


@app.command("describe")
def dataset_describe(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Show the label statistics, rejects and warnings of a dataset's latest version."""
    from autovision.data.importer import DatasetImportError, load_report
    from autovision.storage import Storage, StorageError

    try:
        report = load_report(Storage.from_settings(), name)
    except (DatasetImportError, StorageError) as error:
        fail(escape(str(error)))
    _show(report, as_json)


def _show(report: dict[str, Any], as_json: bool, reused: bool | None = None) -> None:
    """Print a report's summary as one JSON object, or as AutoML-style label stats and warnings."""
    from autovision.data.manifest import SPLITS
    from autovision.data.report import summary as summarise

    summary = summarise(report) | ({} if reused is None else {"reused": reused})
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    table = Table(title=f"{summary['name']} {summary['version']} ({summary['task']})")
    for column in ("label", *SPLITS, "total"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, counts in summary["perLabel"].items():
        table.add_row(escape(label), *(str(counts[split]) for split in SPLITS), str(sum(counts.values())))
    console.print(table)
    console.print(
        f"{summary['total']} files: {summary['kept']} images kept ({summary['trainable']} for training), "
        f"{summary['rejected']} rejected, {summary['duplicates']} duplicates, "
        f"{summary['nearDuplicates']} near-duplicates, {summary['conflicts']} conflicting labels, "
        f"{summary['unlabelled']} unlabelled; imbalance ratio {summary['imbalanceRatio']}"
    )
    for reason, count in summary["rejectReasons"].items():
        console.print(f"  rejected {count}: {reason}")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning[/yellow] {warning['reason']}: {escape(warning['message'])}")
    if reused:
        console.print("[dim]this version was already imported: nothing was written[/dim]")
