"""One split of a dataset version decoded a batch at a time, each batch sized from a memory budget.

Evaluation, the export's parity checks, int8 calibration and the per-format runs
all read the test (or validation) split through this, so what they hold at a time
is one batch of decoded images, whatever the split's size: never the split as
per-image objects (records come from the index a row group at a time) nor as one
tensor. Each pass decodes the split again, through the training cache's own
decoder (``train.images.load_images`` on one batch's records), so the pixels are
exactly the ones the model was trained and served on. The few images the report
shows (heatmaps) are fetched by URI, checked against their hashes like every other read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import torch

from autovision.data.manifest import ImageRecord, SplitName
from autovision.data.versions import VersionIndex
from autovision.preprocess import FloatArray, PreprocessConfig
from autovision.storage import Storage
from autovision.train.images import ImageSet, decoding_pool, load_images, normalise

# What one decoded batch may hold: its uint8 pixels and, once normalised, their float32 model input.
DECODE_BUDGET_BYTES = 256 * 1024 * 1024
# uint8 RGB pixels (in the decoding pool's shared memory and copied out of it) plus their float32 copy.
BYTES_PER_PIXEL = 3 * (1 + 1 + 4)


def batch_images(size: int, budget_bytes: int = DECODE_BUDGET_BYTES) -> int:
    """Images per decoded batch at ``size`` px: as many as ``budget_bytes`` holds as uint8 pixels (twice:
    decoded, then copied out of the pool's memory) plus their float32 model input (at least one)."""
    return max(1, budget_bytes // (BYTES_PER_PIXEL * size * size))


@dataclass(frozen=True)
class SplitImages:
    """One split of a version at one resolution (its first ``limit`` images when given), read again on each
    pass, one budget-sized batch at a time."""

    index: VersionIndex
    split: SplitName
    labels: list[str]
    size: int
    storage: Storage
    budget_bytes: int = DECODE_BUDGET_BYTES
    limit: int | None = None
    workers: int | None = None

    def record_batches(self) -> Iterator[list[ImageRecord]]:
        """The split's records in index order, ``batch_images`` at a time."""
        records = islice(self.index.records(self.split), self.limit)
        count = batch_images(self.size, self.budget_bytes)
        while batch := list(islice(records, count)):
            yield batch

    def batches(self) -> Iterator[ImageSet]:
        """The split decoded (uint8, with targets and URIs), one batch at a time, by one pool of decoding
        processes for the whole pass."""
        largest = min(batch_images(self.size, self.budget_bytes), self.index.count(self.split))
        if self.limit is not None:
            largest = min(largest, self.limit)
        with decoding_pool(largest, self.size, self.workers) as pool:
            for records in self.record_batches():
                yield load_images(records, self.labels, self.size, self.storage, self.workers, pool=pool)

    def inputs(self, preprocess: PreprocessConfig) -> ModelInputs:
        """The split as model input, re-readable, one normalised batch at a time."""
        return ModelInputs(self, preprocess)

    def pixels_of(self, uris: list[str]) -> torch.Tensor:
        """A few of the split's images by URI (the report's heatmaps), read, checked against their hashes (a
        corrupt shard is named) and decoded in this process by the batches' own decoder (uint8 NCHW)."""
        found = self.index.records_of(uris, self.split)
        if missing := set(uris) - found.keys():
            raise ValueError(f"not images of the {self.split} split: {sorted(missing)[:3]}")
        records = [found[uri] for uri in uris]
        return load_images(records, self.labels, self.size, self.storage, workers=1).pixels


@dataclass(frozen=True)
class ModelInputs:
    """A split's model input (float32 NCHW), one budget-sized batch per step; each iteration decodes again."""

    images: SplitImages
    preprocess: PreprocessConfig

    def __iter__(self) -> Iterator[torch.Tensor]:
        for batch in self.images.batches():
            yield normalise(batch.pixels, self.preprocess)

    def arrays(self) -> ArrayInputs:
        """The same batches as NumPy arrays, for the runtimes that take them (ONNX Runtime, LiteRT)."""
        return ArrayInputs(self)


@dataclass(frozen=True)
class ArrayInputs:
    """Model input batches as NumPy arrays, re-readable like the tensors they come from."""

    tensors: ModelInputs

    def __iter__(self) -> Iterator[FloatArray]:
        for batch in self.tensors:
            yield batch.numpy()
