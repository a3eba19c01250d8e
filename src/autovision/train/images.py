"""Training images decoded once into a compact uint8 cache, normalised batch-wise on the training device.

Decoding dominates the time it takes to fill the cache and is pure, so it runs on
a process per core, as the importer's does (threads scale poorly: small images
spend most of their decoding time in Python, holding the GIL). The forked workers
write straight into the cache, held in memory they share with this process, so
no decoded image is pickled back. A reader of many batches (evaluation) keeps one
pool for all of them (``decoding_pool``) rather than forking one per batch.
The cached values are exactly the shared preprocessing's resized pixels, so
``normalise`` gives the very inputs serving computes from the same bytes.

A split too large for memory is streamed instead (``autovision.train.streaming``);
``TrainingImages`` is what the trainer asks of either.
"""

from __future__ import annotations

import contextlib
import functools
import math
import mmap
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Protocol

import numpy as np
import torch

from autovision.data.batching import map_in_order
from autovision.data.inspection import decoding_context, decoding_workers
from autovision.data.manifest import ImageRecord
from autovision.data.shards import read_images
from autovision.evaluate.predictions import BoolArray
from autovision.preprocess import ImageLimits, PixelArray, PreprocessConfig, load_pixels
from autovision.storage import Storage

PREDICT_BATCH = 256
# Images read from storage at a time: bounds the encoded bytes held while they decode.
READ_CHUNK = 1024
# Images a worker decodes per task: enough that handing out tasks costs little next to decoding.
DECODE_BATCH = 64


class TrainingImages(Protocol):
    """What a trial trains on: the decoded cache (``ImageSet``) or a stream from the shards."""

    def __len__(self) -> int: ...

    @property
    def label_count(self) -> int:
        """The width of a target row."""
        ...

    @property
    def crops(self) -> bool:
        """Whether augmented batches come randomly cropped already (the device then only rotates them)."""
        ...

    def to(self, device: torch.device) -> TrainingImages:
        """The same images, delivered on another device."""
        ...

    def training_batches(
        self, selections: Iterable[torch.Tensor], magnitude: float, seed: int
    ) -> Generator[tuple[torch.Tensor, torch.Tensor]]:
        """Each selection of rows as uint8 pixels (N, 3, S, S) and target rows on the device, in order, produced
        as they are asked for; ``magnitude`` and ``seed`` (the epoch's) say how to augment where that is done
        while decoding."""
        ...


@dataclass
class ImageSet:
    """Images of one or more splits at one resolution, decoded once.

    ``pixels`` are the shared preprocessing's resized RGB values as uint8 (N, 3,
    S, S); ``normalised`` turns them into exactly the float input
    ``preprocess_bytes`` gives. ``targets`` is a 0/1 matrix (N, labels): one-hot
    for single-label data, multi-hot for multi-label data.
    """

    pixels: torch.Tensor
    targets: torch.Tensor
    uris: list[str]

    def __len__(self) -> int:
        return len(self.uris)

    @property
    def label_count(self) -> int:
        """The width of a target row."""
        return int(self.targets.shape[1])

    @property
    def crops(self) -> bool:
        """Cached images are whole: augmentation zooms and shifts them on the device."""
        return False

    def to(self, device: torch.device) -> ImageSet:
        """The same images on another device."""
        return ImageSet(self.pixels.to(device), self.targets.to(device), self.uris)

    def training_batches(
        self, selections: Iterable[torch.Tensor], magnitude: float, seed: int
    ) -> Generator[tuple[torch.Tensor, torch.Tensor]]:
        """The selected rows of the cache, one selection at a time (augmentation is left to the device)."""
        for selection in selections:
            rows = selection.to(self.pixels.device)
            yield self.pixels[rows], self.targets[rows]

    def inputs(self, preprocess: PreprocessConfig) -> torch.Tensor:
        """All images as model input (normalised float32)."""
        return normalise(self.pixels, preprocess)

    def truth(self) -> BoolArray:
        """Which labels are correct for each image, as a boolean array on the CPU."""
        return np.asarray(self.targets.cpu().numpy() > 0.5, dtype=np.bool_)

    def batches(self, preprocess: PreprocessConfig, size: int = PREDICT_BATCH) -> Iterator[torch.Tensor]:
        """Model input in batches, normalised one batch at a time."""
        for start in range(0, len(self), size):
            yield normalise(self.pixels[start : start + size], preprocess)

    @staticmethod
    def concat(first: ImageSet, second: ImageSet) -> ImageSet:
        """Two sets as one (train + validation for the final fit)."""
        return ImageSet(
            torch.cat([first.pixels, second.pixels]),
            torch.cat([first.targets, second.targets]),
            first.uris + second.uris,
        )


def normalise(pixels: torch.Tensor, preprocess: PreprocessConfig) -> torch.Tensor:
    """uint8 pixels to model input with the same float32 operations as ``preprocess_bytes``."""
    mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def target_matrix(records: Sequence[ImageRecord], labels: list[str]) -> torch.Tensor:
    """The 0/1 matrix of each record's labels, in the model's output order."""
    index = {label: i for i, label in enumerate(labels)}
    targets = torch.zeros(len(records), len(labels), dtype=torch.float32)
    for row, record in enumerate(records):
        targets[row, [index[label] for label in record.labels]] = 1.0
    return targets


def decode_pixels(data: bytes, size: int) -> PixelArray:
    """One encoded image as the cache holds it: the shared preprocessing's resize, uint8 CHW."""
    return load_pixels(data, size, ImageLimits()).transpose(2, 0, 1)


def load_images(
    records: Sequence[ImageRecord],
    labels: list[str],
    size: int,
    storage: Storage,
    workers: int | None = None,
    *,
    pool: DecodingPool | None = None,
) -> ImageSet:
    """Read, decode and resize every record's image once, as uint8, on ``workers`` processes (default: the cores),
    or on ``pool``'s, forked once for many calls (``decoding_pool``).

    ``records`` may be a ``RecordTable``: it is read a chunk of records at a time, never as a list of them all.
    """
    if pool is not None:
        pixels = pool.decode(records, storage).copy()  # the pool's buffer is the next call's
    else:
        with decoding_pool(len(records), size, workers) as own:
            pixels = _decode_here(records, size, storage) if own is None else own.decode(records, storage)
    return ImageSet(torch.from_numpy(pixels), target_matrix(records, labels), [record.uri for record in records])


class DecodingPool:
    """Decoding processes and the memory they share with this process, for batches of up to ``capacity``
    images at ``size`` px: the forked workers decode straight into it, so no decoded image is pickled back."""

    def __init__(self, capacity: int, size: int, workers: int, context: BaseContext) -> None:
        shape = (capacity, 3, size, size)
        self.size, self.workers = size, workers
        self.pixels = np.frombuffer(mmap.mmap(-1, math.prod(shape)), dtype=np.uint8).reshape(shape)
        self.executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_attach, initargs=(self.pixels,))

    def decode(self, records: Sequence[ImageRecord], storage: Storage) -> PixelArray:
        """The records' images in the first rows of the shared memory (valid until the next call)."""
        if len(records) > len(self.pixels):
            raise ValueError(f"{len(records)} images to decode, the pool holds {len(self.pixels)}")
        decode = functools.partial(_decode_into_attached, size=self.size)
        for _ in map_in_order(self.executor, decode, _decode_tasks(records, storage), 2 * self.workers):
            pass
        return self.pixels[: len(records)]


@contextlib.contextmanager
def decoding_pool(capacity: int, size: int, workers: int | None = None) -> Iterator[DecodingPool | None]:
    """A pool of ``workers`` decoding processes (default: the cores) for batches of up to ``capacity`` images,
    forked once for all of them; ``None`` where decoding in this process pays (one worker, no more than one
    task's images, or no fork)."""
    workers = workers or decoding_workers()
    context = decoding_context()
    if workers < 2 or capacity <= DECODE_BATCH or context.get_start_method() != "fork":
        yield None
        return
    pool = DecodingPool(capacity, size, workers, context)
    with pool.executor:
        yield pool


def _decode_here(records: Sequence[ImageRecord], size: int, storage: Storage) -> PixelArray:
    pixels = np.empty((len(records), 3, size, size), dtype=np.uint8)
    for task in _decode_tasks(records, storage):
        _decode_into(pixels, task, size)
    return pixels


_DecodeTask = tuple[int, list[bytes]]
_ATTACHED: dict[str, PixelArray] = {}  # in a pool's worker: the cache it decodes into


def _attach(pixels: PixelArray) -> None:
    _ATTACHED["pixels"] = pixels


def _decode_into_attached(task: _DecodeTask, size: int) -> None:
    _decode_into(_ATTACHED["pixels"], task, size)


def _decode_into(pixels: PixelArray, task: _DecodeTask, size: int) -> None:
    """Decode a task's images into their rows of the cache."""
    start, encoded = task
    for offset, data in enumerate(encoded):
        pixels[start + offset] = decode_pixels(data, size)


def _decode_tasks(records: Sequence[ImageRecord], storage: Storage) -> Iterator[_DecodeTask]:
    """The images' bytes in order, checked against their hashes, DECODE_BATCH at a time with the row of the first,
    read from their shards READ_CHUNK at a time."""
    for start in range(0, len(records), READ_CHUNK):
        encoded = read_images(list(records[start : start + READ_CHUNK]), storage.settings)
        for offset in range(0, len(encoded), DECODE_BATCH):
            yield start + offset, encoded[offset : offset + DECODE_BATCH]
