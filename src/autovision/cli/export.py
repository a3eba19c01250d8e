"""``autovision export``: write an edge format (TFLite, Core ML, ExecuTorch) of a finished run's model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from autovision.cli._console import ModelArgument, console, fail

app = typer.Typer()


@app.command(name="export")
def export_command(
    model: ModelArgument,
    formats: Annotated[
        list[str],
        typer.Option(
            "--format",
            help="tflite, tflite-int8 (calibrated on the run's training images, read from its dataset version in "
            "the storage root), coreml or executorch; repeat for several.",
        ),
    ],
    executorch_venv: Annotated[
        Path, typer.Option(help="The venv scripts/setup-executorch.sh creates (ExecuTorch only).")
    ] = Path(".venv-executorch"),
) -> None:
    """Write edge formats beside the run's ONNX model; a format that fails leaves the others written."""
    from autovision.export.edge import edge_input, run_model, store_edge_formats, training_images
    from autovision.export.layout import ModelNotFoundError, locate_model
    from autovision.resources import EdgeFormat
    from autovision.storage import Storage, StorageError

    unknown = sorted(set(formats) - set(EdgeFormat))
    if unknown:
        fail(f"unknown format(s) {', '.join(unknown)}: choose from {', '.join(EdgeFormat)}")
    chosen = [EdgeFormat(name) for name in formats]
    try:
        location = locate_model(model)
        card = location.card()
        module = run_model(model)
    except (ModelNotFoundError, StorageError, ValueError, FileNotFoundError) as error:
        fail(str(error))
    calibration = None
    if EdgeFormat.TFLITE_INT8 in chosen:
        try:
            calibration = training_images(card, Storage.from_settings())
        except (StorageError, ValueError, FileNotFoundError) as error:
            fail(f"{EdgeFormat.TFLITE_INT8} needs the run's training images: {error}")
    with tempfile.TemporaryDirectory(prefix="autovision-export-") as workdir:
        stored = store_edge_formats(
            module, edge_input(card), chosen, location, executorch_venv, workdir=Path(workdir), calibration=calibration
        )
    for fmt, written in stored.written.items():
        console.print(f"{fmt}: {written.uri} ({written.size_bytes / 1e6:.2f} MB)")
    if stored.failures:
        fail("\n".join(f"{fmt}: {reason}" for fmt, reason in stored.failures.items()))
