"""``autovision crds``: regenerate the CRDs from the resource models."""

from __future__ import annotations

import typer

from autovision.cli._console import console

app = typer.Typer()


@app.command()
def crds() -> None:
    """Regenerate crds/*.yaml and the chart's CRD templates from the pydantic models."""
    from autovision.crds import write_all_crds

    for path in write_all_crds():
        console.print(f"wrote {path}")
