"""Shared console helpers of the CLI: output, errors and the rich progress reporter."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from autovision.contract import env
from autovision.contract.keys import run_prefix

console = Console()
errors = Console(stderr=True)

# A finished run, as `evaluate` and `serve` take it (resolved by autovision.export.layout.locate_model).
ModelArgument = Annotated[
    str,
    typer.Argument(
        help="A run or its model/ directory: a URI (file://, s3://), a path, or a run prefix under "
        f"{env.STORAGE_ROOT} such as {run_prefix('local', 'quickstart', '<uid>')}."
    ),
]


class RichReporter:
    """Shows each stage as a progress bar with its latest detail."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def _finish_current(self) -> None:
        if self.task is not None:
            total = self.progress.tasks[-1].total
            self.progress.update(self.task, completed=total)

    def stage(self, title: str, total: float | None = None) -> None:
        self._finish_current()
        self.task = self.progress.add_task(title, total=total, detail="")

    def update(self, completed: float, detail: str = "") -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=completed, detail=detail)

    def note(self, message: str) -> None:
        self.progress.console.print(f"[dim]{message}[/dim]")


def progress_display() -> Progress:
    """The progress display every long-running command uses."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one readable error line and exit non-zero (``code``: 1, or a contract exit code such as bad input's)."""
    errors.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code=code)
