"""What every source (zip, CSV index, storage prefix) offers the importer.

A source is read twice: ``scan`` streams every file once for validation, keeping
nothing, and ``read`` fetches the kept images again, a bounded chunk at a time,
while they are written. Memory therefore never holds more than one chunk of images.
"""

from __future__ import annotations

import hashlib
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


def slice_of(key: str, slices: int) -> int:
    """The slice (of ``slices``) a file belongs to: a hash of its name, so that neither the source's order
    nor another file changes it, and a file named twice lands in one slice."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()) % slices


class Source(ABC):
    """A readable origin of labelled images.

    ``total`` and ``position`` are progress in the source's own units (entries, or
    bytes of a CSV); ``ignored`` counts files skipped silently (``__MACOSX``, dot files).
    ``part`` is (index, slices): ``scan`` offers only the files of that slice
    (``slice_of``); by default, all of them.
    """

    description: str = ""
    total: int | None = None
    position: int = 0
    ignored: int = 0
    part: tuple[int, int] = (0, 1)

    def in_part(self, key: str) -> bool:
        """Whether the file (or CSV line) called ``key`` is in the slice this source scans."""
        index, slices = self.part
        return slices == 1 or slice_of(key, slices) == index

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
