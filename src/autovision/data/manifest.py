"""A dataset version's index: one row per kept image (its labels, split and where it lies), written last.

The index is a Parquet file (one columnar table, compressed, readable in row
groups); its schema metadata carries the format version and each shard's facts.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from autovision.contract.files import DATASET_FORMAT, DatasetIndexHeader
from autovision.storage import StorageError, member_uri, split_member_uri

# "unassigned": kept in the version but never trained or evaluated on (unlabelled
# images, and images held out because they carry conflicting labels).
SplitName = Literal["train", "validation", "test", "unassigned"]
UNASSIGNED: SplitName = "unassigned"
# The splits a model is trained, tuned and evaluated on, in that order.
SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")


class ImageRecord(BaseModel):
    """One image of a dataset version, as the trainer reads it."""

    uri: str
    sha256: str
    labels: list[str]
    split: SplitName
    width: int
    height: int
    source: str = ""


# The index's schema metadata key holding its DatasetIndexHeader as JSON.
HEADER_METADATA = b"autovision"
# Rows per Parquet row group: what a reader holds at a time when reading in slices.
ROW_GROUP = 65_536
# Records built at a time from a row group by ``index_batches``: a few MB of Python objects.
RECORD_SLICE = 4096


class DatasetFormatError(StorageError):
    """A version's index is not one this AutoVision reads (another format, or not an index at all)."""


INDEX_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("split", pa.dictionary(pa.int8(), pa.string())),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("source", pa.string()),
        ("shard", pa.int32()),
        ("offset", pa.int64()),
        ("size", pa.int64()),
    ]
)


def write_index(path: Path, table: pa.Table, header: DatasetIndexHeader) -> None:
    """Write a version's index.parquet to a local file from its columns (``INDEX_SCHEMA``), a row group at a
    time, the header in its schema metadata."""
    schema = INDEX_SCHEMA.with_metadata({HEADER_METADATA: json.dumps(header.to_json()).encode()})
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for start in range(0, table.num_rows, ROW_GROUP):
            writer.write_table(
                table.slice(start, ROW_GROUP).cast(INDEX_SCHEMA).replace_schema_metadata(schema.metadata),
                row_group_size=ROW_GROUP,
            )


def index_table(
    records: Sequence[ImageRecord], shards: Sequence[int], offsets: Sequence[int | None], sizes: Sequence[int | None]
) -> pa.Table:
    """An index's columns from records (small versions, tests), each image at ``shards``/``offsets``/``sizes``
    (its record's own ``uri`` is not read)."""
    return pa.table(
        {
            "sha256": [record.sha256 for record in records],
            "labels": [record.labels for record in records],
            "split": pa.array([record.split for record in records], pa.string()).dictionary_encode(),
            "width": [record.width for record in records],
            "height": [record.height for record in records],
            "source": [record.source for record in records],
            "shard": shards,
            "offset": offsets,
            "size": sizes,
        }
    )


def encode_index(records: Sequence[ImageRecord], shards: Sequence[int], header: DatasetIndexHeader) -> bytes:
    """The index.parquet bytes of a version from records (small versions, tests): each record with the number
    of the shard its ``uri`` points into."""
    extents = [split_member_uri(record.uri)[1:] for record in records]
    table = index_table(records, shards, [offset for offset, _ in extents], [size for _, size in extents])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.parquet"
        write_index(path, table, header)
        return path.read_bytes()


def index_header(data: bytes) -> DatasetIndexHeader:
    """An index's header, checked to be of the format this AutoVision reads."""
    try:
        metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
    except pa.ArrowException as error:
        raise DatasetFormatError(f"not a dataset index ({error}): import the dataset again") from error
    if HEADER_METADATA not in metadata:
        raise DatasetFormatError("the dataset index carries no format version: import the dataset again")
    header = DatasetIndexHeader.model_validate(json.loads(metadata[HEADER_METADATA]))
    if header.format_version != DATASET_FORMAT:
        raise DatasetFormatError(
            f"the dataset index has format {header.format_version}, this AutoVision reads format "
            f"{DATASET_FORMAT}: import the dataset again with this version"
        )
    return header


def index_batches(
    data: bytes,
    shard_uri: Callable[[int], str],
    split: SplitName | None = None,
    offsets: Collection[int] | None = None,
) -> Iterator[list[ImageRecord]]:
    """An index's records ``RECORD_SLICE`` rows at a time (only ``split``'s, only those at ``offsets`` in their
    shards, when given), each ``uri`` pointing into its shard: what a reader holds is one slice, whatever the
    version's size. Rows are chosen in Arrow, so a reader of a few records builds only theirs."""
    index_header(data)
    for group in pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=RECORD_SLICE):
        batch = group if split is None else group.filter(pc.equal(group.column("split").cast(pa.string()), split))
        if offsets is not None:
            batch = batch.filter(pc.is_in(batch.column("offset"), value_set=pa.array(list(offsets), pa.int64())))
        yield records_of(batch, {number: shard_uri(number) for number in set(batch.column("shard").to_pylist())})


def records_of(rows: pa.RecordBatch | pa.Table, shard_uris: Mapping[int, str]) -> list[ImageRecord]:
    """Index rows as records, each ``uri`` pointing into its shard (``shard_uris``: shard number to URI): the one
    place an index row becomes an object, so every reader builds the same records."""
    return [
        ImageRecord(
            uri=member_uri(shard_uris[row["shard"]], row["offset"], row["size"]),
            sha256=row["sha256"],
            labels=row["labels"],
            split=row["split"],
            width=row["width"],
            height=row["height"],
            source=row["source"],
        )
        for row in rows.to_pylist()
    ]


def index_columns(data: bytes, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Some columns of an index, one row group at a time: counting and summing without building records."""
    index_header(data)
    yield from pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=ROW_GROUP, columns=list(columns))
