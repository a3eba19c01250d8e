"""A dataset version's records as columns: the index's rows as one Arrow table, and its shards' URIs.

As ``ImageRecord`` objects a version costs about 1.5 KB of Python objects per
image (1.5 GB at a million images); as the index's columns it costs a few hundred
bytes of Arrow buffers and no Python object per image. A ``RecordTable`` is a
``Sequence[ImageRecord]`` that builds records only when asked for one (iterating
builds them ``RECORD_SLICE`` at a time), and answers what the trainer asks of a
whole version (a split, the label set, the task, the images' sides) from the
columns. It is immutable and picklable: a search job carries it to every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autovision.data.manifest import RECORD_SLICE, SPLITS, ImageRecord, SplitName, index_header, records_of


@dataclass(frozen=True, eq=False)
class RecordTable(Sequence[ImageRecord]):
    """A version's records (or some of them) in the index's columns (``INDEX_SCHEMA``), in the index's order.

    ``shard_uris`` maps each shard number the rows name to the shard's URI, so a
    record's ``uri`` is built as ``index_batches`` builds it. ``[i]`` is one record;
    ``[a:b]``, ``take`` and ``where_split`` are smaller tables, never lists, so
    that only the caller that decodes a batch turns it into records (``list(...)``).
    """

    table: pa.Table
    shard_uris: Mapping[int, str]

    @classmethod
    def read(cls, data: bytes, shard_uri: Callable[[int], str]) -> RecordTable:
        """The records of a version's index (its Parquet bytes), read column-wise; ``shard_uri`` gives a shard's URI
        from its number."""
        header = index_header(data)
        table = pq.read_table(pa.BufferReader(data))
        uris = {shard.number: shard_uri(shard.number) for shard in header.shards}
        return cls(table.replace_schema_metadata(None), uris)

    def __len__(self) -> int:
        return int(self.table.num_rows)

    @overload
    def __getitem__(self, index: int) -> ImageRecord: ...

    @overload
    def __getitem__(self, index: slice) -> RecordTable: ...

    def __getitem__(self, index: int | slice) -> ImageRecord | RecordTable:
        if isinstance(index, slice):
            rows = range(len(self))[index]
            if rows.step == 1:
                return RecordTable(self.table.slice(rows.start, len(rows)), self.shard_uris)
            return self.take(rows)
        row = range(len(self))[index]  # IndexError past either end, as a list
        return records_of(self.table.slice(row, 1), self.shard_uris)[0]

    def __iter__(self) -> Iterator[ImageRecord]:
        for batch in self.table.to_batches(max_chunksize=RECORD_SLICE):
            yield from records_of(batch, self.shard_uris)

    __hash__ = None  # type: ignore[assignment]  # equal by value, yet not hashed (a table is large)

    def __eq__(self, other: object) -> bool:
        """Two tables are equal when they hold the same records in the same order."""
        if not isinstance(other, RecordTable):
            return NotImplemented
        return len(self) == len(other) and all(mine == theirs for mine, theirs in zip(self, other, strict=True))

    def take(self, rows: Sequence[int]) -> RecordTable:
        """These rows, in this order (a batch to decode, or a stream's shuffled selection)."""
        return RecordTable(self.table.take(pa.array(rows, pa.int64())), self.shard_uris)

    def where_split(self, *splits: SplitName) -> RecordTable:
        """The rows of each split in turn, in the index's order within each (train then validation, as the cache
        concatenates them for the final fit)."""
        names = self.table.column("split").cast(pa.string())
        parts = [self.table.filter(pc.equal(names, split)) for split in splits]
        return RecordTable(parts[0] if len(parts) == 1 else pa.concat_tables(parts), self.shard_uris)

    def label_set(self) -> list[str]:
        """The dataset's label set, sorted: the model's output order.

        Only images in a training split count, so a label seen only on held-out
        images never becomes a class without examples.
        """
        trained = self.table.filter(pc.is_in(self.table.column("split").cast(pa.string()), pa.array(SPLITS)))
        labels: list[str] = pc.unique(pc.list_flatten(trained.column("labels"))).to_pylist()
        return sorted(labels)

    def multi_label(self) -> bool:
        """Whether any image carries more than one label (the task of a version without an import report)."""
        return bool(pc.any(pc.greater(pc.list_value_length(self.table.column("labels")), 1)).as_py())

    def short_sides(self) -> npt.NDArray[np.int32]:
        """Each image's shorter side in pixels (what the search space's choice of resolutions looks at)."""
        sides = pc.min_element_wise(self.table.column("width"), self.table.column("height"))
        return np.asarray(sides.to_numpy(), dtype=np.int32)
