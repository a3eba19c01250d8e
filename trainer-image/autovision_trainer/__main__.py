"""``autovision-trainer import|train``: what the operator's Jobs run.

Exit codes: 0 success, 2 bad input (the Job's podFailurePolicy fails the Job at
once instead of retrying), anything else a retryable failure (the retry resumes
from the checkpoints in storage).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer

from autovision.data.importer import DatasetImportError, SplitSettings
from autovision.data.importer import import_dataset as import_source
from autovision.data.manifest import import_progress_key
from autovision.data.rules import check_dataset_name
from autovision.pipeline import RunLocation, join_search, train_evaluate_export
from autovision.progress import LogReporter, ProgressFile
from autovision.resources import Backbone, OptimizeFor, Task
from autovision.search.runner import CONNECT_TIMEOUT_SECONDS, SearchSettings
from autovision.storage import Storage, StorageError
from autovision.train.models import BackboneWeightsError

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
    if task not in {choice.value for choice in Task}:
        _bad_input(f"task {task!r} is not one of {', '.join(choice.value for choice in Task)}")
    try:
        check_dataset_name(name)  # before a storage key is made of it
    except DatasetImportError as error:
        _bad_input(str(error))
    storage = Storage.from_settings()
    progress = ProgressFile(storage, import_progress_key(name), LogReporter())
    try:
        result = import_source(
            source, name, storage, SplitSettings(train, validation, test, seed), task=Task(task), reporter=progress
        )
    except (DatasetImportError, StorageError) as error:
        _bad_input(str(error))
    finally:
        progress.remove()
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
    optimize_for: Annotated[OptimizeFor, typer.Option(case_sensitive=False)] = OptimizeFor.BALANCED,
    early_stopping: Annotated[bool, typer.Option("--early-stopping/--no-early-stopping")] = True,
    workers: Annotated[int | None, typer.Option(min=1, help="Search workers; default one per GPU.")] = None,
    backbone: Annotated[list[str] | None, typer.Option(metavar="NAME=ARCH@URI", help="A user backbone.")] = None,
    nodes: Annotated[int, typer.Option(min=1, envvar="AUTOVISION_NODES", help="Nodes of the search.")] = 1,
    coordinator: Annotated[
        str | None,
        typer.Option(envvar="AUTOVISION_STUDY_COORDINATOR", help="HOST:PORT of node 0's study server."),
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds the other nodes wait for node 0's study server.")
    ] = CONNECT_TIMEOUT_SECONDS,
) -> None:
    """Search, fit, evaluate and export a TrainingJob's model inside its budget; resumable.

    Single- and multi-label datasets alike: the task is read from the dataset version.
    The workers of one pod (one per GPU) share the search. With several nodes
    (an Indexed Job; this pod's index in JOB_COMPLETION_INDEX), pod 0 serves the
    study on the coordinator's port and fits, evaluates and exports the model;
    the other pods train trials of the same study and finish with the search.
    """
    import torch

    try:
        backbones = [Backbone.parse(text) for text in backbone or []]
        settings = SearchSettings(
            optimize_for=optimize_for,
            early_stopping=early_stopping,
            workers=workers or max(1, torch.cuda.device_count()),
            node=int(os.environ.get("JOB_COMPLETION_INDEX", "0")),
            nodes=nodes,
            coordinator=coordinator,
            connect_timeout=connect_timeout,
        )
    except ValueError as error:
        _bad_input(str(error))
    # Node 0 (or the only node) searches, fits and exports; the other nodes only search with it.
    step: Callable[..., dict[str, Any] | None] = join_search if settings.is_member_node else train_evaluate_export
    try:
        card = step(
            Storage.from_settings(),
            dataset,
            dataset_version,
            RunLocation(namespace, job, uid),
            LogReporter(),
            budget_milli_node_hours=budget_milli_node_hours,
            search=settings,
            backbones=backbones,
        )
    except (StorageError, BackboneWeightsError) as error:
        _bad_input(str(error))
    if card is None:
        logging.info("node %d: the search is over; node 0 fits and exports the model", settings.node)
    else:
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
