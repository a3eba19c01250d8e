"""``autovision dataset ...``: import and inspect datasets."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from autovision.cli._console import console, fail

app = typer.Typer(help="Import and inspect datasets.", no_args_is_help=True)


@app.command("import")
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
        fail(str(error))
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
