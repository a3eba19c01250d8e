"""``autovision-trainer import|train``: what the operator's Jobs run.

The command line is ``autovision.contract.trainer_args``, the definition the
operator builds it from. The exit status is ``autovision.contract.exit_codes``:
bad input makes the Job's podFailurePolicy fail the Job at once instead of
retrying; storage that stayed unavailable through ``autovision.storage``'s own
retries exits with the temporary-failure code, and like any other failure it is
retried, the retry resuming from the checkpoints in storage.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

from autovision.contract import env, exit_codes
from autovision.contract.files import RANK_LOST_PHASE, ModelCard, Progress
from autovision.contract.keys import RunLocation, import_progress_key, progress_key
from autovision.contract.trainer_args import ImportArgs, TrainArgs, TrainerArgsError, parse_trainer_args
from autovision.data.importer import DatasetImportError, SplitSettings
from autovision.data.importer import import_dataset as import_source
from autovision.data.rules import check_dataset_name
from autovision.data.slices import SlicedImport, import_as_pod
from autovision.export.edge import EdgeUnavailableError
from autovision.malloc import release_large_buffers
from autovision.pipeline import join_search, train_evaluate_export
from autovision.progress import LogReporter, ProgressFile
from autovision.search.final import FinalFitPlanMissingError
from autovision.search.probe import BudgetTooSmallError
from autovision.search.records import write_progress
from autovision.storage import Storage, StorageError, storage_unavailable
from autovision.train.distributed import DataParallelError
from autovision.train.models import BackboneWeightsError


class BadInputError(ValueError):
    """Input no retry can fix: the Job fails at once."""


class RankLostError(RuntimeError):
    """A rank of the data-parallel final fit died or never joined: the Job retries from the checkpoint."""


def import_dataset(args: ImportArgs) -> None:
    """Import a Dataset's source into a versioned dataset in storage.

    With ``slices`` > 1 this pod is one of an Indexed Job's: it packs slice
    JOB_COMPLETION_INDEX of the source, and pod 0 then merges every slice into
    the version (``autovision.data.slices``); only pod 0 reports progress.
    """
    try:
        check_dataset_name(args.name)  # before a storage key is made of it
    except DatasetImportError as error:
        raise BadInputError(str(error)) from None
    storage = Storage.from_settings()
    index = int(os.environ.get(env.JOB_COMPLETION_INDEX, "0")) if args.slices > 1 else 0
    progress = ProgressFile(storage, import_progress_key(args.name), LogReporter()) if index == 0 else None
    split = SplitSettings(args.train, args.validation, args.test, args.seed)
    try:
        if args.slices > 1:
            job = SlicedImport(args.source, args.name, args.slices, task=args.task, split=split)
            result = import_as_pod(job, index, storage, progress or LogReporter())
        else:
            result = import_source(args.source, args.name, storage, split, task=args.task, reporter=progress)
    except (DatasetImportError, StorageError) as error:
        if storage_unavailable(error):
            raise
        raise BadInputError(str(error)) from None
    finally:
        if progress is not None:
            progress.remove()
    if result is None:
        logging.info("packed slice %d of %d of %s; pod 0 merges them", index, args.slices, args.name)
    else:
        logging.info("imported %s version %s (%d images)", args.name, result.version, result.report["kept"])


def train(args: TrainArgs) -> None:
    """Search, fit, evaluate and export a TrainingJob's model inside its budget; resumable.

    Single- and multi-label datasets alike: the task is read from the dataset version.
    The workers of one pod (one per GPU) share the search. With several nodes
    (an Indexed Job; this pod's index in JOB_COMPLETION_INDEX), pod 0 serves the
    study on the coordinator's port and fits, evaluates and exports the model;
    the other pods train trials of the same study and finish with the search.
    """
    import torch

    from autovision.search.base_model import BaseModelError, find_base_model
    from autovision.search.job import SearchSettings

    try:
        settings = SearchSettings(
            optimize_for=args.optimize_for,
            target=args.target,
            early_stopping=args.early_stopping,
            workers=args.workers or max(1, torch.cuda.device_count()),
            node=int(os.environ.get(env.JOB_COMPLETION_INDEX, "0")),
            nodes=args.nodes,
            coordinator=args.coordinator,
            connect_timeout=args.connect_timeout,
            final_processes=args.nproc or max(1, torch.cuda.device_count()),
            rendezvous=args.rendezvous,
            rendezvous_timeout=args.rendezvous_timeout,
        )
    except ValueError as error:
        raise BadInputError(str(error)) from None
    # Node 0 (or the only node) searches, fits and exports; the other nodes only search with it.
    step: Callable[..., ModelCard | None] = join_search if settings.is_member_node else train_evaluate_export
    exports = {} if settings.is_member_node else {"edge_formats": args.export_format}
    try:
        base = None if args.base_model is None else find_base_model(args.base_model)
        card = step(
            Storage.from_settings(),
            args.dataset,
            args.dataset_version,
            RunLocation(args.namespace, args.job, args.uid),
            LogReporter(),
            budget_milli_node_hours=args.budget_milli_node_hours,
            search=settings,
            backbones=args.backbones(),
            **exports,
            base_model=base,
        )
    except BaseModelError as error:  # missing, unfinished, or not the dataset's labels and task
        raise BadInputError(str(error)) from None
    except (StorageError, BackboneWeightsError) as error:
        if storage_unavailable(error):  # weights unreadable because storage is down: not the weights' fault
            raise
        raise BadInputError(str(error)) from None
    except (BudgetTooSmallError, EdgeUnavailableError) as error:  # said before any training
        raise BadInputError(str(error)) from None
    except (DataParallelError, FinalFitPlanMissingError) as error:
        if not settings.is_member_node:  # the other nodes write no progress.json
            report_rank_lost(Storage.from_settings(), RunLocation(args.namespace, args.job, args.uid), str(error))
        raise RankLostError(str(error)) from None
    if card is None:
        logging.info("node %d: the search is over; node 0 fits and exports the model", settings.node)
    else:
        logging.info("run complete: test accuracy %.4f", card.metrics.test_accuracy)


def report_rank_lost(storage: Storage, run: RunLocation, message: str) -> None:
    """progress.json says RankLost, keeping what it said of the search, so the TrainingJob shows why."""
    key = progress_key(run.prefix)
    progress = (
        Progress.model_validate(storage.read_json(key)) if storage.exists(key) else Progress(phase=RANK_LOST_PHASE)
    )
    write_progress(storage, run.prefix, progress.model_copy(update={"phase": RANK_LOST_PHASE, "message": message}))


def run(argv: Sequence[str]) -> int:
    """Run one trainer command line; its exit status."""
    try:
        args = parse_trainer_args(argv)
        if isinstance(args, ImportArgs):
            import_dataset(args)
        elif isinstance(args, TrainArgs):
            train(args)
    except (TrainerArgsError, BadInputError) as error:
        logging.error("%s", error)
        return exit_codes.BAD_INPUT
    except RankLostError as error:
        logging.error("the final fit lost a rank, the Job retries from its checkpoint: %s", error)
        return exit_codes.RANK_LOST
    except Exception as error:
        if not storage_unavailable(error):
            raise
        logging.error("storage unavailable, the Job retries this pod: %s", error)
        return exit_codes.TEMPORARY_FAILURE
    return exit_codes.SUCCESS


def main() -> None:
    """Console script entry point."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    release_large_buffers()
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
