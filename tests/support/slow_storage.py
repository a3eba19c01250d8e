"""A storage whose every write waits a little, for the tests that SIGKILL an import in a child process: the
import is then still writing when it is killed, however fast the machine. The child script imports it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from autovision.storage import Storage

WRITE_DELAY_S = 0.05
REPO = Path(__file__).resolve().parents[2]


class SlowStorage(Storage):
    """``Storage`` with each object write (whole, streamed or copied) ``WRITE_DELAY_S`` late."""

    def write_bytes(self, key: str, data: bytes) -> None:
        time.sleep(WRITE_DELAY_S)
        super().write_bytes(key, data)

    def write_stream(self, key: str, chunks: Callable[[], Iterable[bytes]]) -> None:
        time.sleep(WRITE_DELAY_S)
        super().write_stream(key, chunks)

    def copy(self, source_key: str, target_key: str) -> None:
        time.sleep(WRITE_DELAY_S)
        super().copy(source_key, target_key)


def child_environment() -> dict[str, str]:
    """This process's environment with the repository on the path, so that a child script can import this."""
    return {**os.environ, "PYTHONPATH": str(REPO)}
