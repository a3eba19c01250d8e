"""What the import's scan learns about each image, kept on disk as a Parquet table rather than in memory.

The scan appends one row per valid file (a few hundred bytes of Python objects,
flushed every ``FLUSH_ROWS`` rows); everything after the scan (deduplication,
the split, the report, the index) reads columns of this table back, which cost
tens of bytes per image where Python objects cost kilobytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from autovision.data.manifest import SplitName
from autovision.data.validate import ImageFacts

SCAN_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("labels", pa.list_(pa.string())),
        # The split the source fixes for the file (a split folder, a CSV's SET), null when it fixes none.
        ("split", pa.string()),
        ("sha256", pa.string()),
        ("extension", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("dhash", pa.uint64()),
        ("size", pa.int64()),
    ]
)
FLUSH_ROWS = 16_384


class ScanTable:
    """Appends the scan's rows to a Parquet file, a bounded batch at a time (``close`` finishes it: use it with
    ``contextlib.closing``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer = pq.ParquetWriter(path, SCAN_SCHEMA, compression="lz4")
        self._pending: dict[str, list[object]] = {name: [] for name in SCAN_SCHEMA.names}

    def append(self, file: str, labels: tuple[str, ...], split: SplitName | None, facts: ImageFacts) -> None:
        """One valid file: its labels (stored sorted, each once), fixed split and facts."""
        row = (
            file,
            sorted(set(labels)),
            split,
            facts.sha256,
            facts.extension,
            facts.width,
            facts.height,
            facts.dhash,
            facts.size,
        )
        for column, value in zip(self._pending.values(), row, strict=True):
            column.append(value)
        self.rows += 1
        if len(self._pending["file"]) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending["file"]:
            self._writer.write_batch(pa.record_batch(list(self._pending.values()), schema=SCAN_SCHEMA))
            self._pending = {name: [] for name in SCAN_SCHEMA.names}

    def close(self) -> None:
        """Write what is pending and finish the file."""
        self._flush()
        self._writer.close()


class ScanFiles:
    """The rows of one or more scan tables on disk (the slices of one source), read a column at a time: the steps
    after the scan hold the columns they use, never the whole table.

    With ``numbered``, a column of that name holds each row's file's position in ``paths`` (which slice it
    came from).
    """

    def __init__(self, paths: list[Path], numbered: str | None = None) -> None:
        self.paths = paths
        self.numbered = numbered
        schema = pq.read_schema(paths[0]) if paths else SCAN_SCHEMA
        self.schema = schema.remove_metadata()
        self._rows = [pq.read_metadata(path).num_rows for path in paths]
        if numbered:
            self.schema = self.schema.append(pa.field(numbered, pa.int32()))

    @property
    def column_names(self) -> list[str]:
        """The columns every file has (and the numbering column)."""
        return list(self.schema.names)

    @property
    def num_rows(self) -> int:
        """Rows in all the files."""
        return sum(self._rows)

    def column(self, name: str) -> pa.ChunkedArray:
        """One column of every file, in file order."""
        if name == self.numbered:
            return pa.chunked_array(
                [np.full(rows, index, np.int32) for index, rows in enumerate(self._rows)], pa.int32()
            )
        kind = self.schema.field(name).type
        chunks = [chunk for path in self.paths for chunk in pq.read_table(path, columns=[name]).column(0).chunks]
        # One chunk: a take from several concatenates them first, holding the column twice more.
        return pa.chunked_array([pa.concat_arrays(chunks)] if chunks else [], kind)

    def table(self) -> pa.Table:
        """Every column at once: for one slice's rows, which its pod holds anyway."""
        return pa.table({name: self.column(name) for name in self.column_names})
