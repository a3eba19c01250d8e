"""The ``autovision`` command line: quickstart, dataset import, predict, crds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="AutoVision: AutoML for image classification, Kubernetes-native.", no_args_is_help=True)
dataset_app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
console = Console()
errors = Console(stderr=True)


class RichReporter:
    """Shows each stage as a progress bar with its latest detail."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def _finish_current(self) -> None:
        if self.task is not None:
            total = self.progress.tasks[-1].total
            self.progress.update(self.task, completed=total)

    def stage(self, title: str, total: float | None = None) -> None:
        self._finish_current()
        self.task = self.progress.add_task(title, total=total, detail="")

    def update(self, completed: float, detail: str = "") -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=completed, detail=detail)

    def note(self, message: str) -> None:
        self.progress.console.print(f"[dim]{message}[/dim]")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=1)


@app.command()
def quickstart(
    data: Annotated[
        str | None, typer.Option(help="Zip of label folders (path or URI); default: bundled digits.")
    ] = None,
    workdir: Annotated[Path, typer.Option(help="Where storage, logs and the served repository live.")] = Path(
        ".autovision"
    ),
    s3: Annotated[bool, typer.Option("--s3/--no-s3", help="Store everything in an embedded SeaweedFS S3.")] = False,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs of the single trial.")] = 12,
) -> None:
    """Run the whole path locally: import, train, evaluate, export, serve, predict."""
    from autovision.data.importer import DatasetImportError
    from autovision.quickstart import run_quickstart
    from autovision.storage import StorageError
    from autovision.train.trainer import TrainConfig

    try:
        with _progress() as progress:
            result = run_quickstart(
                workdir, RichReporter(progress), data=data, use_s3=s3, config=TrainConfig(epochs=epochs)
            )
    except KeyboardInterrupt:
        errors.print("interrupted: everything finished so far is kept; run the same command again to continue")
        raise typer.Exit(code=130) from None
    except (DatasetImportError, StorageError) as error:
        _fail(str(error))
        return
    metrics = result.card["metrics"]
    summary = Table(title="AutoVision quickstart", show_header=False)
    summary.add_row("dataset", f"{result.dataset.name} {result.dataset.version} ({len(result.dataset.records)} images)")
    summary.add_row("run", result.run.prefix)
    summary.add_row("test accuracy", f"{metrics['testAccuracy']:.4f}")
    summary.add_row("validation accuracy", f"{metrics['validationAccuracy']:.4f}")
    summary.add_row("budget used", f"{result.card['milliNodeHoursUsed']} milli node-hours")
    summary.add_row("image", f"{result.image.source} (true label {result.image.labels[0]})")
    for protocol, predictions in result.predictions.items():
        top = ", ".join(f"{p.label} {p.score:.3f}" for p in predictions)
        summary.add_row(f"Triton {protocol}", top)
    console.print(summary)


@dataset_app.command("import")
def dataset_import(
    source: Annotated[str, typer.Argument(help="Zip of label folders: path, file:// or s3:// URI.")],
    name: Annotated[str, typer.Option(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Validate, dedupe, split and version a dataset in AutoVision's storage."""
    from autovision.data.importer import DatasetImportError, import_zip
    from autovision.storage import Storage, StorageError

    try:
        result = import_zip(source, name, Storage.from_settings())
    except (DatasetImportError, StorageError) as error:
        _fail(str(error))
        return
    summary: dict[str, Any] = {"name": name, "version": result.version, "reused": result.reused}
    summary.update({k: result.report[k] for k in ("total", "kept", "rejected", "duplicates", "conflicts", "perLabel")})
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
        return
    table = Table(title=f"{name} {result.version}")
    for column in ("label", "train", "validation", "test"):
        table.add_column(column)
    for label, counts in summary["perLabel"].items():
        table.add_row(label, *(str(counts[s]) for s in ("train", "validation", "test")))
    console.print(table)
    console.print(f"{summary['kept']} kept, {summary['rejected']} rejected, {summary['duplicates']} duplicates")


@app.command(name="predict")
def predict_command(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Encoded image (JPEG, PNG, ...).")],
    endpoint: Annotated[str, typer.Option(help="Triton endpoint host:port.")] = "127.0.0.1:8000",
    protocol: Annotated[str, typer.Option(help="http or grpc.")] = "http",
    model: Annotated[str, typer.Option(help="Model name in the repository.")] = "autovision",
    top_k: Annotated[int, typer.Option(min=1, help="Labels to return.")] = 3,
) -> None:
    """Ask a Triton endpoint for the top-k labels of one image."""
    from autovision.serving import PredictionError, predict

    if protocol not in ("http", "grpc"):
        _fail("--protocol must be http or grpc")
    chosen: Literal["http", "grpc"] = "grpc" if protocol == "grpc" else "http"
    try:
        predictions = predict(image.read_bytes(), endpoint, protocol=chosen, model_name=model, top_k=top_k)
    except PredictionError as error:
        _fail(str(error))
        return
    for prediction in predictions:
        console.print(f"{prediction.label}\t{prediction.score:.4f}")


@app.command()
def crds() -> None:
    """Regenerate crds/*.yaml and the chart's CRD templates from the pydantic models."""
    from autovision.crds import write_all_crds

    for path in write_all_crds():
        console.print(f"wrote {path}")
