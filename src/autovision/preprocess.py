"""The one image preprocessing definition shared by training, export and serving.

This module depends only on NumPy and Pillow, so the very same file is copied into
Triton model repositories and imported by the Python backend there: the served
model sees exactly the tensors the trained one saw.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatArray = npt.NDArray[np.float32]
PixelArray = npt.NDArray[np.uint8]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pillow's own decompression-bomb threshold; above twice this, Pillow refuses to open at all.
PILLOW_MAX_PIXELS = 89_478_485
# Worst-case bytes one decoded pixel holds at once: the decoded image in its widest mode
# (RGBA, CMYK, 32-bit I or F: 4 bytes) plus its RGB conversion (3), rounded up.
DECODE_BYTES_PER_PIXEL = 8
# Memory one decoding process may spend on decoded images unless the settings say otherwise.
DEFAULT_DECODE_MEMORY_BYTES = 2 * 1024**3
# A JPEG is decoded at a reduced DCT scale only while it stays at least this many times
# the model's input on each side, so the final bilinear resize still averages many pixels.
DRAFT_MARGIN = 2


class ImageLimitError(ValueError):
    """An image over an ``ImageLimits`` limit; the message names the limit. Nothing was decoded."""


@dataclass(frozen=True)
class ImageLimits:
    """The one image policy of import, serving and batch prediction: encoded bytes and decoded pixels.

    30 MB is AutoML Vision's per-image limit; the pixel limit is Pillow's
    decompression-bomb threshold, under which a decoded image needs at most
    ``DECODE_BYTES_PER_PIXEL`` bytes a pixel (about 716 MB).
    """

    max_bytes: int = 30 * 1024 * 1024
    max_pixels: int = PILLOW_MAX_PIXELS

    def __post_init__(self) -> None:
        if not 0 < self.max_pixels <= 2 * PILLOW_MAX_PIXELS:
            raise ValueError(f"max_pixels must be in 1..{2 * PILLOW_MAX_PIXELS} (Pillow opens no larger image)")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")

    def check_bytes(self, size: int) -> None:
        """Refuse an encoded image of ``size`` bytes over the byte limit; callable before reading it."""
        if size > self.max_bytes:
            raise ImageLimitError(f"image of {size} bytes exceeds the {self.max_bytes}-byte limit")

    def decode_bytes(self) -> int:
        """The most memory decoding one image within these limits can need."""
        return self.max_pixels * DECODE_BYTES_PER_PIXEL

    def decode_slots(self, memory_budget_bytes: int) -> int:
        """How many images one process may decode at once within its memory budget (at least one)."""
        return max(1, memory_budget_bytes // self.decode_bytes())


@dataclass(frozen=True)
class PreprocessConfig:
    """How an encoded image becomes a model input: square size, RGB mean and std."""

    size: int = 32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PreprocessConfig:
        raw = json.loads(text)
        return cls(size=int(raw["size"]), mean=tuple(raw["mean"]), std=tuple(raw["std"]))


def open_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open an encoded image, reading only its header; refuse it when over a limit.

    Pillow only warns between its threshold and twice it; here ``limits`` decide,
    before any pixel is decoded, so that warning is silenced and its error reworded.
    """
    limits.check_bytes(len(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageLimitError(f"image exceeds the {limits.max_pixels}-pixel limit ({error})") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageLimitError(f"image of {width}x{height} pixels exceeds the {limits.max_pixels}-pixel limit")
    return image


def decode_image(data: bytes, limits: ImageLimits, size: int | None = None) -> Image.Image:
    """Decode an image fully within ``limits`` (truncated files raise), as RGB.

    Given the model's input ``size``, a JPEG much larger than it is decoded at a
    reduced DCT scale (Pillow's ``draft``): several times faster and lighter, while
    staying at least ``DRAFT_MARGIN`` times the input on each side.
    """
    image = open_image(data, limits)
    if size is not None and image.format == "JPEG":
        image.draft("RGB", (size * DRAFT_MARGIN, size * DRAFT_MARGIN))
    image.load()
    return image.convert("RGB")


def resized_pixels(image: Image.Image, size: int) -> PixelArray:
    """The model's square input before normalisation: RGB uint8, HWC.

    Training caches exactly these values and normalises them on its device, so it
    sees the same numbers ``image_to_array`` gives serving.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")  # converting an RGB image copies it whole
    return np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def image_to_array(image: Image.Image, config: PreprocessConfig) -> FloatArray:
    """Resize to the model's square input and normalise into a CHW float32 array."""
    pixels = resized_pixels(image, config.size).astype(np.float32) / 255.0
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def load_pixels(data: bytes, size: int, limits: ImageLimits) -> PixelArray:
    """Encoded image bytes to the model's square RGB uint8 input: what training caches."""
    return resized_pixels(decode_image(data, limits, size), size)


def preprocess_bytes(data: bytes, config: PreprocessConfig, limits: ImageLimits = ImageLimits()) -> FloatArray:
    """Encoded image bytes to one CHW float32 model input."""
    return image_to_array(decode_image(data, limits, config.size), config)


def preprocess_batch(images: list[bytes], config: PreprocessConfig, limits: ImageLimits = ImageLimits()) -> FloatArray:
    """Encoded images to one NCHW float32 batch."""
    return np.stack([preprocess_bytes(data, config, limits) for data in images])
