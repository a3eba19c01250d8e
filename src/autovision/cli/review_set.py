"""``autovision review-set``: the least confident logged images of a deployment, as a CSV to label and import."""

from __future__ import annotations

import posixpath
from typing import Annotated

import typer
from rich.table import Table

from autovision.cli._console import console, fail

app = typer.Typer()


@app.command(name="review-set")
def review_set_command(
    deployment: Annotated[
        str, typer.Argument(help="The ModelDeployment whose log to read (for autovision serve: autovision).")
    ],
    namespace: Annotated[str, typer.Option(help="Its namespace (autovision serve logs under local).")] = "local",
    count: Annotated[int, typer.Option(min=1, help="Most images in the set.")] = 100,
    output: Annotated[str, typer.Option(help="Where to write the CSV: a path or a URI.")] = "review.csv",
) -> None:
    """Write the ``count`` least confident logged images (stored images only, once each) of a deployment's
    prediction log in the storage root as an AutoML import CSV: ``UNASSIGNED,<image URI>`` rows, to which a
    person appends each image's label before importing the CSV as a new version of the Dataset."""
    from autovision.contract.keys import logged_image_key, prediction_log_prefix
    from autovision.monitor.review import ReviewSetError, confidence, least_confident, review_csv
    from autovision.serving.prediction_log import read_log
    from autovision.storage import Storage, StorageError

    try:
        storage = Storage.from_settings()
        prefix = prediction_log_prefix(namespace, deployment)
        chosen = least_confident(read_log(storage, prefix), count, storage.uri(prefix))
        directory, name = posixpath.split(output)
        target = Storage(directory or ".", storage.settings)
        target.write_bytes(name, review_csv(chosen, lambda sha256: storage.uri(logged_image_key(prefix, sha256))))
    except (ReviewSetError, StorageError, ValueError) as error:
        fail(str(error))
    table = Table("sha256", "model", "top-1 label", "score", title=f"{len(chosen)} image(s) to label")
    for record in chosen[:10]:
        table.add_row(
            record.sha256[:12], record.model, record.top[0].label if record.top else "-", f"{confidence(record):.3f}"
        )
    console.print(table)
    console.print(f"wrote {target.uri(name)}: append each row's label, then import it as a new Dataset version")
