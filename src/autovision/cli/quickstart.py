"""``autovision quickstart``: the whole local path on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from autovision.cli._console import RichReporter, console, errors, fail, progress_display

app = typer.Typer()


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
        with progress_display() as progress:
            result = run_quickstart(
                workdir, RichReporter(progress), data=data, use_s3=s3, config=TrainConfig(epochs=epochs)
            )
    except KeyboardInterrupt:
        errors.print("interrupted: everything finished so far is kept; run the same command again to continue")
        raise typer.Exit(code=130) from None
    except (DatasetImportError, StorageError) as error:
        fail(str(error))
    metrics = result.card.metrics
    summary = Table(title="AutoVision quickstart", show_header=False)
    summary.add_row("dataset", f"{result.dataset.name} {result.dataset.version} ({len(result.dataset.records)} images)")
    summary.add_row("run", result.run.prefix)
    summary.add_row("test accuracy", f"{metrics.test_accuracy:.4f}")
    summary.add_row("validation accuracy", f"{metrics.validation_accuracy:.4f}")
    summary.add_row("budget used", f"{result.card.milli_node_hours_used} milli node-hours")
    summary.add_row("image", f"{result.image.source} (true label {result.image.labels[0]})")
    for protocol, predictions in result.served.kserve.items():
        summary.add_row(f"Triton {protocol}", ", ".join(f"{p.label} {p.score:.3f}" for p in predictions))
    automl = ", ".join(f"{p.display_name} {p.score:.3f}" for p in result.served.automl) or "(no label above 0.5)"
    summary.add_row("AutoML JSON gateway", automl)
    console.print(summary)
