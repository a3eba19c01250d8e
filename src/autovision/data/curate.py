"""From the scan's table of validated files to the distinct images of a version, with labels and splits.

Pure logic on columns (pyarrow tables, numpy arrays): exact duplicates (same
sha256) are kept once; the same image under different labels is merged for
multi-label data and held out (kept, never trained on) for single-label data;
splits come from the source where it fixes them and from the deterministic
stratified split otherwise. Only files that share their bytes with another
become Python objects, and only the first ``list_limit`` findings of each kind
are kept as examples (their counts are complete), so memory follows the
columns: tens of bytes per image.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from autovision.contract.files import DATASET_FORMAT
from autovision.data.manifest import SPLITS, UNASSIGNED, SplitName
from autovision.data.scan_table import SCAN_SCHEMA
from autovision.data.split import SplitSettings, stratified_codes

# A version's split of each image as an index into this tuple (what the split arrays hold).
SPLIT_NAMES: tuple[SplitName, ...] = (*SPLITS, UNASSIGNED)
UNASSIGNED_CODE = SPLIT_NAMES.index(UNASSIGNED)
# Rows hashed into the content address at a time.
VERSION_SLICE = 65_536

SplitCodes = npt.NDArray[np.int8]


@dataclass
class Findings:
    """How many of one kind of finding there were, and the first ``limit`` of them as examples."""

    limit: int
    count: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, example: dict[str, Any]) -> None:
        """Count one finding, keeping it as an example while there is room."""
        self.count += 1
        if len(self.examples) < self.limit:
            self.examples.append(example)


@dataclass
class Curated:
    """The distinct images (a table sorted by sha256), and what deduplication found on the way.

    ``images`` has the scan's columns (``file`` being the first file, by name, of
    those sharing the image's bytes; ``split`` the split the source fixes, or
    null) and ``held_out``.
    """

    images: pa.Table
    duplicates: Findings
    conflicts: Findings
    split_clashes: Findings


class Columns(Protocol):
    """A table read a column at a time: a ``pa.Table`` in memory, or the scan's files on disk
    (``autovision.data.scan_table.ScanFiles``), whose columns are never all in memory at once."""

    @property
    def column_names(self) -> list[str]: ...

    @property
    def num_rows(self) -> int: ...

    def column(self, name: str) -> pa.ChunkedArray: ...


def one_array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array, copied only when it has several chunks (``combine_chunks`` always copies)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def curate(scan: Columns, multi_label: bool, list_limit: int) -> Curated:
    """Keep each distinct image once, merging or holding out conflicting labels.

    Memory: the sort keys (sha256 and file), then one column of ``scan`` at a time
    beside the distinct images' columns, so the scan is never held whole.
    """
    keys = pa.table({"sha256": scan.column("sha256"), "file": scan.column("file")})
    order = pc.sort_indices(keys, sort_keys=[("sha256", "ascending"), ("file", "ascending")])
    sha256 = one_array(keys.column("sha256").take(order))
    del keys
    count = len(sha256)
    starts_group = np.ones(count, dtype=bool)
    if count > 1:
        starts_group[1:] = pc.not_equal(sha256.slice(1), sha256.slice(0, count - 1)).to_numpy(zero_copy_only=False)
    del sha256
    starts = np.flatnonzero(starts_group)
    sizes = np.diff(np.append(starts, count))
    del starts_group
    curated = Curated(SCAN_SCHEMA.empty_table(), Findings(list_limit), Findings(list_limit), Findings(list_limit))
    shared = np.flatnonzero(sizes > 1)
    labels, splits = _merge_groups(scan, order, starts[shared], sizes[shared], multi_label=multi_label, found=curated)
    # The first file (by name) of each group, in the order of the hashes: the distinct images' rows.
    firsts = order.take(pa.array(starts))
    del order, starts, sizes
    columns = {name: one_array(scan.column(name).take(firsts)) for name in scan.column_names}
    columns["labels"] = _replaced(columns["labels"], shared, labels)
    columns["split"] = _replaced(columns["split"], shared, splits)
    held_out = pc.and_(pc.greater(pc.list_value_length(columns["labels"]), 1), pa.scalar(not multi_label))
    curated.images = pa.table({**columns, "held_out": held_out})
    return curated


def _replaced(column: pa.Array, positions: npt.NDArray[np.int64], values: pa.Array) -> pa.Array:
    """``column`` with the values at ``positions`` replaced by ``values`` (one take, whatever the type)."""
    if not len(positions):
        return column
    indices = np.arange(len(column), dtype=np.int64)
    indices[positions] = len(column) + np.arange(len(positions), dtype=np.int64)
    return pa.concat_arrays([column, values.cast(column.type)]).take(pa.array(indices))


def _merge_groups(
    scan: Columns,
    order: pa.Array,
    starts: npt.NDArray[np.int64],
    sizes: npt.NDArray[np.int64],
    *,
    multi_label: bool,
    found: Curated,
) -> tuple[pa.Array, pa.Array]:
    """The merged labels and fixed split of each group of files sharing their bytes; records duplicates, label
    conflicts and split clashes in ``found`` (its images are not touched). ``order`` sorts ``scan`` by (sha256,
    file); a group is ``order[start:start + size]``. Reads only the groups' rows (shared files are few)."""
    within = np.repeat(starts - np.cumsum(np.append(0, sizes[:-1])), sizes) + np.arange(int(sizes.sum()))
    rows = order.take(pa.array(within, pa.int64()))
    members = {name: scan.column(name).take(rows).to_pylist() for name in ("file", "labels", "split", "sha256")}
    labels: list[list[str]] = []
    splits: list[str | None] = []
    bounds = np.append(0, np.cumsum(sizes)).tolist()
    for start, end in itertools.pairwise(bounds):
        files: list[str] = members["file"][start:end]
        merged = sorted({label for own in members["labels"][start:end] for label in own})
        if len(merged) > 1 and not multi_label:
            found.conflicts.add({"sha256": members["sha256"][start], "files": files, "labels": merged})
        else:
            for file in files[1:]:
                found.duplicates.add({"file": file, "duplicateOf": files[0]})
        fixed = sorted({split for split in members["split"][start:end] if split}, key=SPLITS.index)
        if len(fixed) > 1:
            found.split_clashes.add({"file": files[0], "splits": fixed, "keptIn": fixed[0]})
        labels.append(merged)
        splits.append(fixed[0] if fixed else None)
    return pa.array(labels, pa.list_(pa.string())), pa.array(splits, pa.string())


def assign_splits(images: pa.Table, settings: SplitSettings) -> tuple[SplitCodes, list[SplitName]]:
    """Each image's split (an index into ``SPLIT_NAMES``, in the table's order), and the splits that had to be
    taken from train.

    Unlabelled and held-out images are unassigned. When the source fixes splits
    but leaves validation or test empty, their share is taken from train,
    stratified, so that early stopping, the search and the evaluation have data.
    """
    labels = one_array(images.column("labels"))
    sha256 = one_array(images.column("sha256"))
    fixed = pc.fill_null(pc.index_in(images.column("split"), value_set=pa.array(SPLITS)), -1).to_numpy()
    unassigned = images.column("held_out").to_numpy() | (pc.list_value_length(labels).to_numpy() == 0)
    codes = np.where(unassigned, UNASSIGNED_CODE, fixed).astype(np.int8)
    automatic = np.flatnonzero(codes < 0)
    codes[automatic] = _stratified(sha256, labels, automatic, settings.percentages, settings.seed)
    if not (fixed >= 0).any():
        return codes, []
    present = {SPLIT_NAMES[code] for code in np.unique(codes).tolist()}
    carved: list[SplitName] = [
        name
        for name, percent in zip(SPLITS[1:], settings.percentages[1:], strict=True)
        if percent and name not in present
    ]
    if carved:
        train = np.flatnonzero(codes == 0)
        shares = tuple(
            percent if name in carved else 0 for name, percent in zip(SPLITS, settings.percentages, strict=True)
        )
        codes[train] = _stratified(sha256, labels, train, (settings.train, shares[1], shares[2]), settings.seed)
    return codes, carved


def _stratified(
    sha256: pa.Array, labels: pa.Array, chosen: npt.NDArray[np.int64], percentages: tuple[int, int, int], seed: int
) -> SplitCodes:
    if len(chosen) == len(sha256):  # every image (``chosen`` is sorted): no copy of the columns
        return stratified_codes(sha256, labels, percentages, seed)
    indices = pa.array(chosen, pa.int64())
    return stratified_codes(sha256.take(indices), labels.take(indices), percentages, seed)


def content_version(task: str, images: pa.Table, codes: SplitCodes) -> str:
    """Content address of a version: its format, the task and each image's bytes, labels and split
    (``images`` sorted by sha256, as ``curate`` leaves them), hashed a slice at a time."""
    digest = hashlib.sha256(f"format\t{DATASET_FORMAT}\ntask\t{task}\n".encode())
    for start in range(0, images.num_rows, VERSION_SLICE):
        part = images.slice(start, VERSION_SLICE)
        rows = zip(
            part.column("sha256").to_pylist(),
            part.column("labels").to_pylist(),
            codes[start : start + VERSION_SLICE].tolist(),
            strict=True,
        )
        digest.update(
            "".join(f"{sha}\t{','.join(labels)}\t{SPLIT_NAMES[code]}\n" for sha, labels, code in rows).encode()
        )
    return f"sha256-{digest.hexdigest()[:32]}"
