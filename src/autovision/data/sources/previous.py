"""A dataset's previous version as a source, so that a new version can be that version plus new rows.

``autovision dataset import NAME --add-to-previous CSV`` (the labelled review set
of logged images, say) imports the union of the dataset's latest version and the
new source. The previous version's images are offered again with their labels and
their splits: kept, so that every image the previous version tested on is still in
the new test split and models of the two versions are compared on common ground.
They pass the same checks as any image (they passed them once already), and an
image the new rows repeat is a duplicate, or a conflict when its labels differ,
as in any import. Images are read from their shards a chunk at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from autovision.data.manifest import SPLITS, ImageRecord
from autovision.data.sources.base import Offer, Scanned, Source
from autovision.data.sources.reader import READ_CHUNK
from autovision.settings import Settings
from autovision.storage import read_uris


class VersionSource(Source):
    """The images of a stored dataset version, with the labels and splits it gave them."""

    def __init__(self, records: Sequence[ImageRecord], settings: Settings, description: str) -> None:
        self.records = records
        self.settings = settings
        self.description = description
        self.total = len(records)

    def scan(self) -> Iterator[Scanned]:
        """Every image of the version, read ``READ_CHUNK`` at a time."""
        for start in range(0, len(self.records), READ_CHUNK):
            chunk = self.records[start : start + READ_CHUNK]
            for record, data in zip(chunk, read_uris([record.uri for record in chunk], self.settings), strict=True):
                self.position += 1
                # An unlabelled image's "unassigned" is no split to keep: the import assigns it again.
                split = record.split if record.split in SPLITS else None
                yield Offer(record.uri, tuple(record.labels), split, data)

    def read(self, files: Sequence[str]) -> list[bytes]:
        """The images at these member URIs again."""
        return read_uris(list(files), self.settings)

    def close(self) -> None:
        """Nothing to release: every read opens and closes its own objects."""


class UnionSource(Source):
    """Several sources offered one after the other, as one; each file is read again from the source that offered it."""

    def __init__(self, *sources: Source) -> None:
        self.sources = sources
        self.description = " + ".join(source.description for source in sources)
        self._owner: dict[str, int] = {}

    def scan(self) -> Iterator[Scanned]:
        """Each source's files in turn; ``position`` counts the files offered."""
        for index, source in enumerate(self.sources):
            for scanned in source.scan():
                if isinstance(scanned, Offer):
                    self._owner[scanned.file] = index
                self.position += 1
                yield scanned
            self.ignored += source.ignored

    def read(self, files: Sequence[str]) -> list[bytes]:
        """The files again, each from its own source, in the order asked."""
        wanted: dict[int, list[int]] = defaultdict(list)
        for position, file in enumerate(files):
            wanted[self._owner[file]].append(position)
        contents: list[bytes] = [b""] * len(files)
        for index, positions in wanted.items():
            for position, data in zip(positions, self.sources[index].read([files[p] for p in positions]), strict=True):
                contents[position] = data
        return contents

    def close(self) -> None:
        """Close every source."""
        for source in self.sources:
            source.close()
