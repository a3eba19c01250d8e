"""``autovision-trainer import|train``: what the operator's Jobs run.

Exit codes: 0 success, 2 bad input (the Job's podFailurePolicy fails the Job at
once instead of retrying), anything else a retryable failure (the retry resumes
from the checkpoints in storage).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, NoReturn

import typer

from autovision.data.importer import DatasetImportError, SplitSettings
from autovision.data.importer import import_dataset as import_source
from autovision.pipeline import RunLocation, train_evaluate_export
from autovision.progress import LogReporter
from autovision.storage import Storage, StorageError

BAD_INPUT_EXIT_CODE = 2

app = typer.Typer(help="AutoVision trainer: run by the operator's Jobs.", no_args_is_help=True)


@app.command(name="import")
def import_dataset(
    *,
    name: Annotated[str, typer.Option()],
    source: Annotated[str, typer.Option()],
    task: Annotated[str, typer.Option()] = "SingleLabel",
    train: Annotated[int, typer.Option()] = 80,
    validation: Annotated[int, typer.Option()] = 10,
    test: Annotated[int, typer.Option()] = 10,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Import a Dataset's source into a versioned dataset in storage."""
    if task != "SingleLabel":
        _bad_input(f"task {task} is not supported by this trainer version yet")
    try:
        result = import_source(source, name, Storage.from_settings(), SplitSettings(train, validation, test, seed))
    except (DatasetImportError, StorageError) as error:
        _bad_input(str(error))
    logging.info("imported %s version %s (%d images)", name, result.version, len(result.records))


@app.command()
def train(
    *,
    namespace: Annotated[str, typer.Option()],
    job: Annotated[str, typer.Option()],
    uid: Annotated[str, typer.Option()],
    dataset: Annotated[str, typer.Option()],
    dataset_version: Annotated[str, typer.Option()],
    budget_milli_node_hours: Annotated[int, typer.Option(min=1)],
) -> None:
    """Train, evaluate and export a TrainingJob's model inside its budget; resumable."""
    storage = Storage.from_settings()
    try:
        card = train_evaluate_export(
            storage,
            dataset,
            dataset_version,
            RunLocation(namespace, job, uid),
            LogReporter(),
            budget_milli_node_hours=budget_milli_node_hours,
        )
    except StorageError as error:
        _bad_input(str(error))
    logging.info("run complete: test accuracy %.4f", card["metrics"]["testAccuracy"])


def _bad_input(message: str) -> NoReturn:
    logging.error("%s", message)
    sys.exit(BAD_INPUT_EXIT_CODE)


def main() -> None:
    """Console script entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app()


if __name__ == "__main__":
    main()
