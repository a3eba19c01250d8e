"""Record tables made in memory, for tests of what reads a version's records (no import needed)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from autovision.data.manifest import INDEX_SCHEMA, ImageRecord
from autovision.data.record_table import RecordTable

SHARD_URI = "file:///versions/v/shards/000000.tar"


def record_table(records: Sequence[ImageRecord]) -> RecordTable:
    """A table of these records' labels, splits and sizes, their images laid one after another in one shard (their
    own ``uri`` is not kept)."""
    columns = {
        "sha256": [record.sha256 for record in records],
        "labels": [record.labels for record in records],
        "split": pa.array([record.split for record in records], pa.string()).dictionary_encode(),
        "width": [record.width for record in records],
        "height": [record.height for record in records],
        "source": [record.source for record in records],
        "shard": [0] * len(records),
        "offset": [512 * row for row in range(len(records))],
        "size": [100] * len(records),
    }
    return RecordTable(pa.table(columns).cast(INDEX_SCHEMA), {0: SHARD_URI})
