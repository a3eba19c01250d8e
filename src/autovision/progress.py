"""How long-running stages report progress without knowing who is watching.

The CLI shows it with rich; tests and the cluster trainer use the silent or
logging reporter. The core never prints directly.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("autovision")


class Reporter(Protocol):
    """Receives stage starts, fractional progress within a stage, and notes."""

    def stage(self, title: str, total: float | None = None) -> None: ...

    def update(self, completed: float, detail: str = "") -> None: ...

    def note(self, message: str) -> None: ...


class LogReporter:
    """Reports through the ``autovision`` logger (cluster jobs, tests)."""

    def stage(self, title: str, total: float | None = None) -> None:
        log.info("stage: %s", title)

    def update(self, completed: float, detail: str = "") -> None:
        if detail:
            log.debug("%s %s", completed, detail)

    def note(self, message: str) -> None:
        log.info("%s", message)
