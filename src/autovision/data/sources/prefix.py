"""A storage prefix (file:// folder or s3:// prefix) of label folders, like an unzipped zip."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from autovision.data.rules import DatasetImportError, ImportLimits, Rejection
from autovision.data.sources.base import Scanned, Source
from autovision.data.sources.layout import detect_layout, is_ignored, place
from autovision.data.sources.reader import CappedReader, Pending
from autovision.data.validate import too_large
from autovision.settings import Settings
from autovision.storage import filesystem, split_uri


class PrefixSource(Source):
    """Objects under a prefix, listed once, read a chunk at a time."""

    def __init__(self, uri: str, settings: Settings, limits: ImportLimits) -> None:
        protocol, base = split_uri(uri)
        self.description = uri
        self.limits = limits
        self._reader = CappedReader(limits.max_image_bytes, settings)
        self._root = f"{protocol}://{base.rstrip('/')}/"
        listing = filesystem(protocol, settings).find(base, detail=True)
        start = len(base.rstrip("/")) + 1
        files = sorted(
            (str(path)[start:], int(info.get("size") or 0))
            for path, info in listing.items()
            if info.get("type") == "file"
        )
        self._files = [(name, size) for name, size in files if not is_ignored(name)]
        if not self._files:
            raise DatasetImportError(f"{uri} holds no files")
        self.ignored = len(files) - len(self._files)
        self.total = len(self._files)
        self._layout = detect_layout([name for name, _ in self._files])

    def _placed(self) -> Iterator[Pending | Rejection]:
        """Each file with its label and split, or why it has none; oversized files are never read."""
        for name, size in self._files:
            self.position += 1
            if not self.in_part(name):
                continue
            spot = place(name, self._layout)
            if isinstance(spot, Rejection):
                yield spot
                continue
            oversized = too_large(name, size, self.limits)
            if oversized:
                yield oversized
                continue
            label, split = spot
            yield Pending(name, self._root + name, (label,), split)

    def scan(self) -> Iterator[Scanned]:
        """Every file under the prefix in name order: its bytes, or why it is left out."""
        return self._reader.offers(self._placed())

    def read(self, files: Sequence[str]) -> list[bytes]:
        """The named files' bytes again, for writing."""
        return self._reader.read_again([self._root + name for name in files])

    def close(self) -> None:
        """Nothing is held open between reads."""
