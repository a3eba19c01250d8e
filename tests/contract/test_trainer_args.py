"""The trainer's command line: what the operator builds is what the trainer parses."""

from __future__ import annotations

import pytest

from autovision.contract.trainer_args import (
    ImportArgs,
    TrainArgs,
    TrainerArgsError,
    parse_trainer_args,
)
from autovision.resources import EdgeFormat, OptimizeFor, Task, TrainingTarget

TRAIN = TrainArgs(
    namespace="ml",
    job="flowers-run",
    uid="u-1",
    dataset="ml/flowers",
    dataset_version="sha256-ab",
    budget_milli_node_hours=250,
    optimize_for=OptimizeFor.LOW_LATENCY,
    target=TrainingTarget.EDGE,
    early_stopping=False,
    nodes=3,
    coordinator="flowers-run-search-0.flowers-run-search:7000",
    backbone=["mine=resnet18@s3://models/r18.pth", "other=resnet50@s3://models/a=b@c.pth"],
    export_format=[EdgeFormat.TFLITE, EdgeFormat.EXECUTORCH],
    nproc=8,
    rendezvous="flowers-run-search-0.flowers-run-search:7001",
    rendezvous_timeout=120.0,
)


@pytest.mark.parametrize(
    "args", [TRAIN, ImportArgs(name="ml/flowers", source="s3://b/f.zip", task=Task.MULTI_LABEL, seed=7)]
)
def test_what_the_operator_builds_the_trainer_parses(args: ImportArgs | TrainArgs) -> None:
    line = args.to_args()
    assert line[0] == args.COMMAND
    assert parse_trainer_args(line) == args


def test_only_the_options_set_are_on_the_command_line() -> None:
    line = ImportArgs(name="d", source="s3://b/d.zip").to_args()
    assert line == ["import", "--name", "d", "--source", "s3://b/d.zip"]
    assert "--no-early-stopping" in TRAIN.to_args()
    assert TRAIN.to_args().count("--backbone") == 2
    assert TRAIN.to_args().count("--export-format") == 2


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ([], "expected a command, one of import, train; got nothing"),
        (["serve"], "got 'serve'"),
        (["import", "--name", "d"], "--source"),
        (["import", "--name", "d", "--source", "s", "--task", "Regression"], "--task: Input should be"),
        (["train", *TRAIN.to_args()[1:], "--budget-milli-node-hours", "0"], "--budget-milli-node-hours"),
        (["train", *TRAIN.to_args()[1:], "--backbone", "mine"], "is not NAME=ARCHITECTURE@URI"),
        (["train", *TRAIN.to_args()[1:], "--bogus", "1"], "unrecognized arguments: --bogus"),
        (["train", *TRAIN.to_args()[1:], "--export-format", "tfjs"], "--export-format: Input should be 'tflite'"),
        (["train", *TRAIN.to_args()[1:], "--nproc", "0"], "--nproc: Input should be greater than or equal to 1"),
        (["train", *TRAIN.to_args()[1:], "--rendezvous-timeout", "0"], "--rendezvous-timeout"),
    ],
)
def test_a_bad_command_line_is_one_clear_error(line: list[str], message: str) -> None:
    with pytest.raises(TrainerArgsError, match=message.replace("(", r"\(")):
        parse_trainer_args(line)


def test_arguments_never_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME", "from-env")
    monkeypatch.setenv("SOURCE", "s3://env/x.zip")
    with pytest.raises(TrainerArgsError, match="--name"):
        parse_trainer_args(["import"])
