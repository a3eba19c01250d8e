"""The trainer's command line: built by the operator (``to_args``), parsed by the trainer (``parse``).

One definition for both sides: a field added here is an option the operator can
set and the trainer reads, with the same name, type, default and check. The
trainer's ``--help`` comes from the field descriptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, ClassVar, Self

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, CliApp, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from autovision.resources import MAX_IMPORT_PODS, Backbone, EdgeFormat, OptimizeFor, Task, TrainingTarget

# How long the workers of nodes other than node 0 wait for node 0's study server.
CONNECT_TIMEOUT_SECONDS = 600.0
# How long the final fit's ranks wait for each other (the rendezvous, then every collective).
RENDEZVOUS_TIMEOUT_SECONDS = 600.0


class TrainerArgsError(ValueError):
    """A command line the trainer cannot run, with one readable message."""


class TrainerArgs(BaseSettings):
    """Base of one trainer command's arguments; ``COMMAND`` is its name on the command line."""

    COMMAND: ClassVar[str]
    model_config = SettingsConfigDict(
        frozen=True, cli_kebab_case=True, cli_implicit_flags=True, cli_hide_none_type=True, cli_exit_on_error=False
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments come from the command line only, never from the environment or a dotenv file."""
        return (init_settings,)

    @classmethod
    def parse(cls, argv: Sequence[str]) -> Self:
        """The arguments after the command's name; TrainerArgsError when they are not valid."""
        try:
            return CliApp.run(cls, cli_args=list(argv))
        except SettingsError as error:
            raise TrainerArgsError(str(error).removeprefix("error parsing CLI: ")) from None
        except ValidationError as error:
            problems = "; ".join(f"--{_flag(str(e['loc'][0]))}: {e['msg']}" for e in error.errors() if e["loc"])
            raise TrainerArgsError(problems or str(error)) from None

    def to_args(self) -> list[str]:
        """The command line that ``parse`` reads back into these arguments: the command, then each set option."""
        args = [self.COMMAND]
        for name in type(self).model_fields:
            if name in self.model_fields_set:
                args += _option(_flag(name), getattr(self, name))
        return args


def _flag(field: str) -> str:
    return field.replace("_", "-")


def _option(flag: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{flag}" if value else f"--no-{flag}"]
    if isinstance(value, list):
        return [part for item in value for part in _option(flag, item)]
    return [f"--{flag}", str(value.value if isinstance(value, Enum) else value)]


class ImportArgs(TrainerArgs):
    """``autovision-trainer import``: import a Dataset's source into a versioned dataset in storage."""

    COMMAND: ClassVar[str] = "import"
    model_config = SettingsConfigDict(cli_prog_name="autovision-trainer import")

    name: str = Field(description="The dataset's name in storage (<namespace>/<name> for a Dataset resource).")
    source: str = Field(description="Zip, CSV index or prefix of label folders to import.")
    task: Task = Field(default=Task.SINGLE_LABEL, description="SingleLabel or MultiLabel.")
    train: int = Field(default=80, ge=0, description="Percent of images in the train split.")
    validation: int = Field(default=10, ge=0, description="Percent of images in the validation split.")
    test: int = Field(default=10, ge=0, description="Percent of images in the test split.")
    seed: int = Field(default=0, description="Seed of the split.")
    slices: int = Field(
        default=1,
        ge=1,
        le=MAX_IMPORT_PODS,
        description="Slices the source is cut into, each validated and packed by its own pod of an Indexed Job "
        "(its slice: the pod's JOB_COMPLETION_INDEX) or local process; pod 0 then merges them into the version.",
    )


class TrainArgs(TrainerArgs):
    """``autovision-trainer train``: search, fit, evaluate and export a TrainingJob's model inside its budget."""

    COMMAND: ClassVar[str] = "train"
    model_config = SettingsConfigDict(cli_prog_name="autovision-trainer train")

    namespace: str = Field(description="The TrainingJob's namespace.")
    job: str = Field(description="The TrainingJob's name.")
    uid: str = Field(description="The TrainingJob's uid: a re-created namesake is a new run.")
    dataset: str = Field(description="The dataset's name in storage.")
    dataset_version: str = Field(description="The dataset version to train on.")
    budget_milli_node_hours: int = Field(
        ge=1, description="Budget in thousandths of a node-hour of device time (1000 = one hour)."
    )
    optimize_for: OptimizeFor = Field(
        default=OptimizeFor.BALANCED, description="Which point of the accuracy/latency front to pick."
    )
    target: TrainingTarget = Field(
        default=TrainingTarget.CLOUD,
        description="Cloud or Edge: an Edge run measures each trial's latency with the LiteRT interpreter on one "
        "CPU thread, records its .tflite size, and writes tflite (the edge extra must be installed).",
    )
    early_stopping: bool = Field(default=True, description="Stop when the search stops improving.")
    workers: int | None = Field(default=None, ge=1, description="Search workers on this node; default one per GPU.")
    nodes: int = Field(default=1, ge=1, description="Nodes of the search (an Indexed Job's completions).")
    coordinator: str | None = Field(default=None, description="HOST:PORT of node 0's study server.")
    connect_timeout: float = Field(
        default=CONNECT_TIMEOUT_SECONDS, ge=0, description="Seconds the other nodes wait for node 0's study server."
    )
    backbone: list[str] = Field(default=[], description="A user backbone, NAME=ARCH@URI; repeatable.")
    export_format: list[EdgeFormat] = Field(
        default=[],
        description="An edge format written after ONNX, TorchScript and int8 ONNX: tflite, tflite-int8, coreml or "
        "executorch; "
        "repeatable. One the trainer cannot write fails the run before training.",
    )
    base_model: str | None = Field(
        default=None,
        description="A finished run to continue from (a run prefix under the storage root, or its URI): every "
        "trial starts from its final weights, with its architecture and preprocessing; only the learning rate "
        "and epochs are searched. Its labels and task must be the dataset's.",
    )
    nproc: int | None = Field(
        default=None,
        ge=1,
        description="Processes per node of the data-parallel final fit (DDP); default one per GPU, else one.",
    )
    rendezvous: str | None = Field(
        default=None,
        description="HOST:PORT where the final fit's ranks of all nodes meet (c10d store at node 0); "
        "needed with several nodes.",
    )
    rendezvous_timeout: float = Field(
        default=RENDEZVOUS_TIMEOUT_SECONDS,
        gt=0,
        description="Seconds the final fit's ranks wait for one another before the phase fails.",
    )

    @field_validator("backbone")
    @classmethod
    def _parseable_backbones(cls, value: list[str]) -> list[str]:
        for text in value:
            Backbone.parse(text)
        return value

    def backbones(self) -> list[Backbone]:
        """The user backbones, parsed."""
        return [Backbone.parse(text) for text in self.backbone]


def trainer_help(field: str) -> str:
    """A train option's description, for ``autovision train``'s options that mean the same as the trainer's."""
    return str(TrainArgs.model_fields[field].description)


TRAINER_COMMANDS: dict[str, type[TrainerArgs]] = {args.COMMAND: args for args in (ImportArgs, TrainArgs)}
"""Each trainer command by its name on the command line."""


def parse_trainer_args(argv: Sequence[str]) -> TrainerArgs:
    """A whole trainer command line (command first) as its arguments; TrainerArgsError when it is not valid."""
    if not argv or argv[0] not in TRAINER_COMMANDS:
        found = repr(argv[0]) if argv else "nothing"
        raise TrainerArgsError(f"expected a command, one of {', '.join(TRAINER_COMMANDS)}; got {found}")
    return TRAINER_COMMANDS[argv[0]].parse(argv[1:])
