"""What several benchmarks share: the machine's description and a reporter that times stages."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name, for the machine column of docs/benchmarks.md."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or os.uname().machine


class StageClock:
    """A progress reporter that records when each stage starts (wall time per stage) and the notes it got."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []
        self.notes: list[str] = []

    def stage(self, title: str, total: float | None = None) -> None:
        """Record when a stage starts."""
        self.starts.append((title, time.perf_counter()))

    def update(self, completed: float, detail: str = "") -> None:
        """Progress within a stage is not timed."""

    def note(self, message: str) -> None:
        """Kept for the result: what a user would have been told."""
        self.notes.append(message)

    def durations(self, end: float, digits: int = 2) -> dict[str, float]:
        """Wall seconds of each stage, by title (a stage lasts until the next one starts)."""
        ends = [start for _, start in self.starts[1:]] + [end]
        return {title: round(stop - start, digits) for (title, start), stop in zip(self.starts, ends, strict=True)}
