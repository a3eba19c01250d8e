"""``autovision evaluate``: redo a model's evaluation at another score threshold, without retraining."""

from __future__ import annotations

import json
import posixpath
import sys
from typing import Annotated

import typer
from rich.table import Table

from autovision.cli._console import ModelArgument, console, fail

app = typer.Typer()


@app.command(name="evaluate")
def evaluate_command(
    model: ModelArgument,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Score threshold for predicted labels.")] = 0.5,
    top_mistakes: Annotated[int, typer.Option(min=0, help="Most confident mistakes to list.")] = 10,
    output: Annotated[str | None, typer.Option(help="Also write the evaluation JSON to this URI or path.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole evaluation as JSON.")] = False,
) -> None:
    """Recompute a model's evaluation from its saved test-split predictions and print a summary."""
    from autovision.contract.keys import EVALUATION_FILE, TEST_PREDICTIONS_FILE
    from autovision.evaluate import SplitPredictions, evaluate_predictions, per_label_rows, summary_rows
    from autovision.evaluate.tables import PER_LABEL_COLUMNS
    from autovision.export.layout import ModelNotFoundError, locate_model
    from autovision.storage import Storage, StorageError

    try:
        location = locate_model(model)
        predictions = SplitPredictions.from_npz(location.storage.read_bytes(location.key(TEST_PREDICTIONS_FILE)))
        evaluation = evaluate_predictions(predictions, score_threshold=threshold, top_mistakes=top_mistakes)
        saved = location.storage.read_json(location.key(EVALUATION_FILE))
        for measured in ("int8", "formats"):  # measured at export time; the threshold does not change them
            if measured in saved:
                evaluation[measured] = saved[measured]
        if output:
            directory, name = posixpath.split(output)
            Storage(directory or ".", location.storage.settings).write_json(name, evaluation)
    except (ModelNotFoundError, StorageError, ValueError) as error:
        fail(str(error))
    if as_json:
        sys.stdout.write(json.dumps(evaluation) + "\n")
        return
    summary = Table(title=f"{location.uri()} at score threshold {threshold:.2f}", show_header=False)
    for name, value in summary_rows(evaluation):
        summary.add_row(name, value)
    console.print(summary)
    labels = Table(*PER_LABEL_COLUMNS)
    for row in per_label_rows(evaluation):
        labels.add_row(*row)
    console.print(labels)
