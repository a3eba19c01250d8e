"""Training images streamed from a version's shards every epoch, for splits too large for the cache.

Where the cache (``autovision.train.images``) decodes a split once, a stream reads
each batch's images with ranged, hash-checked reads (``shards.read_images``) and
decodes them on a pool of processes (one per core), ``PREFETCH`` batches ahead of
the training step, so memory holds a few batches whatever the split's size. The
trainer gives the order (its seeded shuffle, different each epoch) and where in
the epoch to start, so a stream resumes inside an epoch as the cache does.

Without augmentation a streamed image is exactly the cache's (``decode_pixels``:
the shared preprocessing's resize), so both paths feed the model the inputs
serving computes. With augmentation each image is randomly cropped from the
stored image before the resize (random-resized-crop): a JPEG is decoded at a
reduced scale where the crop allows (Pillow's draft, as ``decode_image`` does).
The crop's zoom and shift are drawn from the ranges ``augment.random_affine``
draws from, deterministically from (epoch seed, image), and the device then only
rotates, jitters colour and flips (``augment(..., cropped=True)``). Where the two
paths differ: the affine's zoom-out (zoom < 1) and shifts past the image's edge
fill the cache path's borders with the mean; a crop cannot leave the image, so
the stream keeps such crops whole and inside it; and a crop is taken from the
stored pixels rather than from the resized ones, so a zoomed-in stream image is
sharper.

A shard that cannot be read, or whose bytes are not the index's, fails the
trial with ``ShardError`` naming it; a decoding process that dies fails it with
``StreamError``; neither hangs nor skips an image.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator, Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import torch

from autovision.data.batching import map_in_order
from autovision.data.inspection import decoding_context
from autovision.data.manifest import ImageRecord
from autovision.data.record_table import RecordTable
from autovision.data.shards import ShardError, read_images
from autovision.preprocess import ImageLimits, PixelArray, decode_image, resized_pixels
from autovision.settings import Settings
from autovision.storage import StorageError, StorageUnavailableError
from autovision.train.augment import MAX_SHIFT, MAX_ZOOM
from autovision.train.images import decode_pixels, target_matrix

# Batches decoded ahead of the training step, per decoding process.
PREFETCH = 2


class StreamError(RuntimeError):
    """Streaming the training images failed for a reason other than a shard (a decoding process died)."""


@dataclass(frozen=True)
class Crop:
    """A random crop as ``random_affine`` would zoom and shift: ``zoom`` > 1 keeps 1/zoom of each side; the
    shifts move the crop's centre by that fraction of the half side ([-1, 1] coordinates)."""

    zoom: float
    shift_x: float
    shift_y: float

    @classmethod
    def draw(cls, magnitude: float, seed: int, image: int) -> Crop:
        """Image ``image``'s crop of the epoch whose seed is ``seed``: the same wherever the epoch resumes."""
        rng = np.random.default_rng([seed, image])
        zoom, shift_x, shift_y = rng.uniform(-1.0, 1.0, 3)
        return cls(1 + zoom * MAX_ZOOM * magnitude, shift_x * MAX_SHIFT * magnitude, shift_y * MAX_SHIFT * magnitude)

    @property
    def side(self) -> float:
        """The share of each side the crop keeps (a zoom-out keeps the whole image)."""
        return min(1.0, 1.0 / self.zoom)

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop in an image of this size, in whole pixels, kept inside the image."""
        side = self.side
        centre_x = min(max(0.5 + self.shift_x / 2, side / 2), 1 - side / 2)
        centre_y = min(max(0.5 + self.shift_y / 2, side / 2), 1 - side / 2)
        left, top = round((centre_x - side / 2) * width), round((centre_y - side / 2) * height)
        return (
            left,
            top,
            max(left + 1, round((centre_x + side / 2) * width)),
            max(top + 1, round((centre_y + side / 2) * height)),
        )


def cropped_pixels(data: bytes, size: int, crop: Crop) -> PixelArray:
    """One encoded image cropped, then resized by the shared preprocessing: uint8 CHW.

    The image is decoded at the smallest scale that keeps the crop at least
    ``DRAFT_MARGIN`` times the input on each side (``decode_image``'s rule, applied to the crop).
    """
    image = decode_image(data, ImageLimits(), math.ceil(size / crop.side))
    return resized_pixels(image.crop(crop.box(*image.size)), size).transpose(2, 0, 1)


@dataclass(frozen=True)
class _Task:
    """One batch to decode: its images' rows in the split, their records, and how to augment them."""

    rows: list[int]
    records: list[ImageRecord]
    size: int
    magnitude: float
    seed: int


def decode_batch(task: _Task, settings: Settings) -> PixelArray:
    """A batch's images read from their shards and decoded (cropped when augmenting): uint8 (N, 3, S, S).

    Any failure to read a shard is a ``ShardError`` naming it; storage that stays
    unreachable stays ``StorageUnavailableError`` (a later retry may succeed).
    """
    try:
        encoded = read_images(task.records, settings)
    except (ShardError, StorageUnavailableError):
        raise
    except StorageError as error:
        raise ShardError(f"cannot read a training image from its shard: {error}; import the dataset again") from None
    if task.magnitude <= 0:
        pixels = [decode_pixels(data, task.size) for data in encoded]
    else:
        pixels = [
            cropped_pixels(data, task.size, Crop.draw(task.magnitude, task.seed, row))
            for row, data in zip(task.rows, encoded, strict=True)
        ]
    return np.stack(pixels)


_SETTINGS: dict[str, Settings] = {}  # in a pool's worker: the storage settings it reads with


def _attach(settings: Settings) -> None:
    _SETTINGS["settings"] = settings


def _decode_attached(task: _Task) -> PixelArray:
    return decode_batch(task, _SETTINGS["settings"])


@dataclass(frozen=True)
class StreamedImages:
    """A split's images, read and decoded from the shards batch by batch each epoch (not kept).

    What ``train_trial`` trains on in place of an ``ImageSet`` when the decoded
    split would not fit the memory budget (``autovision.train.memory``).
    """

    records: RecordTable
    labels: tuple[str, ...]
    size: int
    settings: Settings
    workers: int
    device: torch.device

    def __len__(self) -> int:
        return len(self.records)

    @property
    def label_count(self) -> int:
        """The width of a target row."""
        return len(self.labels)

    @property
    def crops(self) -> bool:
        """Augmented batches come randomly cropped (``augment(..., cropped=True)`` then only rotates)."""
        return True

    def to(self, device: torch.device) -> StreamedImages:
        """The same stream, delivering its batches on another device."""
        return dataclasses.replace(self, device=device)

    def training_batches(
        self, selections: Iterable[torch.Tensor], magnitude: float, seed: int
    ) -> Generator[tuple[torch.Tensor, torch.Tensor]]:
        """Each selection's uint8 pixels and target rows, on the device, in order; decoded ``PREFETCH`` batches
        per process ahead. ``magnitude`` > 0 crops each image as drawn from ``seed`` (the epoch's)."""
        tasks = (self._task(selection.tolist(), magnitude, seed) for selection in selections)
        if self.workers < 2:
            for task in tasks:
                yield self._delivered(task, decode_batch(task, self.settings))
            return
        pool = ProcessPoolExecutor(
            self.workers, mp_context=decoding_context(), initializer=_attach, initargs=(self.settings,)
        )
        try:
            for task, pixels in map_in_order(pool, _decode_attached, tasks, PREFETCH * self.workers):
                yield self._delivered(task, pixels)
        except BrokenProcessPool:
            raise StreamError(
                "a process decoding the training images died (killed, or out of memory): the trial stops "
                "rather than skip its images"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _task(self, rows: list[int], magnitude: float, seed: int) -> _Task:
        return _Task(rows, list(self.records.take(rows)), self.size, magnitude, seed)

    def _delivered(self, task: _Task, pixels: PixelArray) -> tuple[torch.Tensor, torch.Tensor]:
        batch = torch.from_numpy(pixels)
        targets = target_matrix(task.records, list(self.labels))
        if self.device.type == "cuda":  # pinned, so the copy overlaps the step before it
            return batch.pin_memory().to(self.device, non_blocking=True), targets.to(self.device)
        return batch, targets
