"""Record tables made in memory, for tests of what reads a version's records (no import needed)."""

from __future__ import annotations

from collections.abc import Sequence

from autovision.data.manifest import INDEX_SCHEMA, ImageRecord, index_table
from autovision.data.record_table import RecordTable

SHARD_URI = "file:///versions/v/shards/000000.tar"


def record_table(records: Sequence[ImageRecord]) -> RecordTable:
    """A table of these records' labels, splits and sizes, their images laid one after another in one shard (their
    own ``uri`` is not kept)."""
    count = len(records)
    table = index_table(records, [0] * count, [512 * row for row in range(count)], [100] * count)
    return RecordTable(table.cast(INDEX_SCHEMA), {0: SHARD_URI})
