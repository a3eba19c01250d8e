"""What every source (zip, CSV index, storage prefix) offers the importer.

A source is read twice: ``scan`` streams every file once for validation, keeping
nothing, and ``read`` fetches the kept images again, a bounded chunk at a time,
while they are written. Memory therefore never holds more than one chunk of images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from autovision.data.manifest import SplitName
from autovision.data.rules import Rejection


@dataclass(frozen=True, slots=True)
class Offer:
    """A file a source offers as an image, with the labels and split it claims."""

    file: str
    labels: tuple[str, ...]
    split: SplitName | None
    data: bytes
    line: int | None = None


Scanned = Offer | Rejection


class Source(ABC):
    """A readable origin of labelled images.

    ``total`` and ``position`` are progress in the source's own units (entries, or
    bytes of a CSV); ``ignored`` counts files skipped silently (``__MACOSX``, dot files).
    """

    description: str = ""
    total: int | None = None
    position: int = 0
    ignored: int = 0

    @abstractmethod
    def scan(self) -> Iterator[Scanned]:
        """Every file of the source, in a deterministic order, with its bytes or why not."""

    @abstractmethod
    def read(self, files: Sequence[str]) -> list[bytes]:
        """The bytes of files ``scan`` offered, again (raises DatasetImportError if gone)."""

    @abstractmethod
    def close(self) -> None:
        """Release open handles (archives, files)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
