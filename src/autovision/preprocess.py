"""The one image preprocessing definition shared by training, export and serving.

This module depends only on NumPy and Pillow, so the very same file is copied into
Triton model repositories and imported by the Python backend there: the served
model sees exactly the tensors the trained one saw.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatArray = npt.NDArray[np.float32]
PixelArray = npt.NDArray[np.uint8]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def decode_image(data: bytes) -> Image.Image:
    """Decode any Pillow-readable encoded image fully (truncated files raise)."""
    image = Image.open(io.BytesIO(data))
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


def preprocess_bytes(data: bytes, config: PreprocessConfig) -> FloatArray:
    """Encoded image bytes to one CHW float32 model input."""
    return image_to_array(decode_image(data), config)


def preprocess_batch(images: list[bytes], config: PreprocessConfig) -> FloatArray:
    """Encoded images to one NCHW float32 batch."""
    return np.stack([preprocess_bytes(data, config) for data in images])
