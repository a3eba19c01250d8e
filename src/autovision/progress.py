"""How long-running stages report progress without knowing who is watching.

The CLI shows it with rich; tests and the cluster trainer use the silent or
logging reporter. The core never prints directly.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from autovision.storage import Storage

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


class ProgressFile:
    """Passes everything on to ``inner`` and keeps a JSON file in storage saying where the work is.

    The operator copies it into the resource's status while the Job runs. It is
    written at every stage and at most every ``interval`` seconds within one;
    a failed write is logged and the work goes on (progress is not worth failing for).
    """

    def __init__(self, storage: Storage, key: str, inner: Reporter, interval: float = 5.0) -> None:
        self.storage = storage
        self.key = key
        self.inner = inner
        self.interval = interval
        self._stage = ""
        self._total: float | None = None
        self._written = 0.0

    def stage(self, title: str, total: float | None = None) -> None:
        self.inner.stage(title, total)
        self._stage, self._total = title, total
        self._write(0.0, "")

    def update(self, completed: float, detail: str = "") -> None:
        self.inner.update(completed, detail)
        if time.monotonic() - self._written >= self.interval:
            self._write(completed, detail)

    def note(self, message: str) -> None:
        self.inner.note(message)

    def remove(self) -> None:
        """The work is over (done or refused): the file goes, so that nothing stale is shown."""
        try:
            self.storage.delete_prefix(self.key)
        except Exception as error:  # noqa: BLE001 - as for writes
            log.warning("cannot remove %s: %s", self.key, error)

    def _write(self, completed: float, detail: str) -> None:
        self._written = time.monotonic()
        progress = {
            "stage": self._stage,
            "completed": completed,
            "total": self._total,
            "detail": detail,
            "updatedAt": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            self.storage.write_json(self.key, progress)
        except Exception as error:  # noqa: BLE001 - any storage failure: report it, keep working
            log.warning("cannot write progress to %s: %s", self.key, error)
