"""The ``autovision`` command line.

One module per command group; each defines its own Typer ``app`` and this
package mounts them, so commands can grow without touching each other.
"""

from __future__ import annotations

import typer

from autovision.cli import (
    console,
    crds,
    dataset,
    evaluate,
    export,
    monitor,
    predict,
    predict_batch,
    quickstart,
    review_set,
    serve,
    train,
)
from autovision.malloc import release_large_buffers

app = typer.Typer(help="AutoVision: AutoML for image classification, Kubernetes-native.", no_args_is_help=True)


@app.callback()
def _every_command() -> None:
    """AutoVision: AutoML for image classification, Kubernetes-native."""
    release_large_buffers()


app.add_typer(dataset.app, name="dataset")
for module in (quickstart, serve, console, predict, crds, evaluate, export, predict_batch, train, monitor, review_set):
    app.registered_commands.extend(module.app.registered_commands)
