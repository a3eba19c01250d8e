"""``autovision export``: write an edge format (TFLite, Core ML, ExecuTorch) of a finished run's model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from autovision.cli._console import ModelArgument, console, fail

app = typer.Typer()

FORMATS = ("tflite", "coreml", "executorch")


@app.command(name="export")
def export_command(
    model: ModelArgument,
    formats: Annotated[list[str], typer.Option("--format", help="tflite, coreml or executorch; repeat for several.")],
    executorch_venv: Annotated[
        Path, typer.Option(help="The venv scripts/setup-executorch.sh creates (ExecuTorch only).")
    ] = Path(".venv-executorch"),
) -> None:
    """Write edge formats beside the run's ONNX model; a format that fails leaves the others written."""
    from autovision.contract.keys import TORCHSCRIPT_FILE
    from autovision.export.edge import EdgeFormat, edge_input, export_edge, module_from_torchscript
    from autovision.export.edge_files import EdgeExportError
    from autovision.export.layout import ModelNotFoundError, locate_model
    from autovision.storage import StorageError

    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        fail(f"unknown format(s) {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    try:
        location = locate_model(model)
        spec = edge_input(location.card())
        module = module_from_torchscript(location.storage.read_bytes(location.key(TORCHSCRIPT_FILE)), spec.size)
    except (ModelNotFoundError, StorageError, ValueError) as error:
        fail(str(error))
    failures = []
    for name in dict.fromkeys(formats):
        with tempfile.TemporaryDirectory(prefix="autovision-export-") as workdir:
            try:
                written = export_edge(module, spec, EdgeFormat(name), Path(workdir), executorch_venv)
            except (EdgeExportError, FileNotFoundError) as error:
                failures.append(f"{name}: {error}")
                continue
            files = [written] if written.is_file() else sorted(p for p in written.rglob("*") if p.is_file())
            size = sum(file.stat().st_size for file in files)
            if written.is_file():
                location.storage.write_bytes(location.key(written.name), written.read_bytes())
            else:
                location.storage.upload_dir(written, location.key(written.name))
            console.print(f"{name}: {location.uri(written.name)} ({size / 1e6:.2f} MB)")
    if failures:
        fail("\n".join(failures))
