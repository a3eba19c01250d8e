"""``autovision predict-batch``: AutoML's batch predict, locally or as a Job in the trainer image."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated

import typer

from autovision.cli._console import RichReporter, console, fail, progress_display
from autovision.contract import env

app = typer.Typer()


@app.command(name="predict-batch")
def predict_batch_command(
    source: Annotated[
        str, typer.Argument(help="A CSV listing image URIs (first column), or a prefix (URI or path) of images.")
    ],
    *,
    model: Annotated[
        str,
        typer.Option(help=f"A run or its model/ directory: URI, path, or run prefix under {env.STORAGE_ROOT}."),
    ],
    output: Annotated[str, typer.Option(help="Output prefix (URI or path) for the JSON Lines shards.")],
    top_k: Annotated[int, typer.Option(min=1, help="Labels per image.")] = 3,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Leave out labels scoring below this.")] = 0.0,
    int8: Annotated[bool, typer.Option("--int8", help="Use the int8 ONNX model (the edge/CPU option).")] = False,
    shard_size: Annotated[int, typer.Option(min=1, help="Images per output file.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Predict every image of SOURCE and write JSON Lines shards and a manifest under OUTPUT."""
    from autovision.export.layout import ModelNotFoundError, locate_model
    from autovision.serving.batch import BatchOptions, BatchPredictionError, load_model, run_batch_prediction
    from autovision.storage import Storage, StorageError

    options = BatchOptions(
        top_k=top_k, score_threshold=threshold, variant="int8" if int8 else "fp32", shard_size=shard_size
    )
    try:
        location = locate_model(model)
        loaded = load_model(location, options.variant)
        storage = Storage(output, location.storage.settings)
        # --json keeps stdout for the manifest alone.
        with contextlib.nullcontext() if as_json else progress_display() as progress:
            reporter = RichReporter(progress) if progress else None
            manifest = run_batch_prediction(source, loaded, storage, options, reporter=reporter)
    except (ModelNotFoundError, BatchPredictionError, StorageError) as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(manifest) + "\n")
        return
    console.print(
        f"{manifest['images']} images, {manifest['errors']} errors, "
        f"{len(manifest['shards'])} JSON Lines file(s) under {output}"
    )
