"""Judge one file's bytes: is it an allowed image, and what are its facts?

Pure: bytes in, facts or a rejection out. The format is judged by decoding, never
by the file name, and every pixel is decoded so that truncated files are caught
here rather than in the middle of training.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from autovision.data.rules import ImportLimits, Rejection, RejectReason
from autovision.preprocess import ImageLimitError, open_image

# Pillow format name -> stored file extension. MPO is the multi-picture JPEG that
# many cameras write; its first frame is a plain JPEG.
ALLOWED_FORMATS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "BMP": "bmp",
    "ICO": "ico",
    "WEBP": "webp",
}
HASH_SIZE = 8


@dataclass(frozen=True, slots=True)
class ImageFacts:
    """What the manifest and the duplicate checks need to know about one image."""

    sha256: str
    extension: str
    width: int
    height: int
    dhash: int
    size: int


def too_large(file: str, size: int, limits: ImportLimits) -> Rejection | None:
    """The rejection for a file over the per-image byte limit, if it is over."""
    if size <= limits.max_image_bytes:
        return None
    megabytes = limits.max_image_bytes / (1024 * 1024)
    return Rejection(file, RejectReason.IMAGE_TOO_LARGE, f"file is larger than {megabytes:g} MB")


def dhash(image: Image.Image) -> int:
    """64-bit difference hash, the same definition as ``imagehash.dhash`` (hash_size 8).

    Perceptually similar images (re-encoded, resized) get hashes a few bits apart.
    """
    grey = np.asarray(image.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS))
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def inspect_image(file: str, data: bytes, limits: ImportLimits) -> ImageFacts | Rejection:
    """Decode an image completely and return its facts, or why it is rejected."""
    oversized = too_large(file, len(data), limits)
    if oversized:
        return oversized
    try:
        image = open_image(data, limits.image_limits())
    except ImageLimitError as error:
        return Rejection(file, RejectReason.TOO_MANY_PIXELS, str(error))
    except UnidentifiedImageError:
        return Rejection(file, RejectReason.NOT_AN_IMAGE, "not an image in any known format")
    # Pillow's parsers raise many exception types on hostile input: any of them means "not an image".
    except Exception as error:  # noqa: BLE001
        return Rejection(file, RejectReason.NOT_AN_IMAGE, f"not a readable image ({_describe(error)})")
    with image:
        return _decode(file, data, image, limits)


def _decode(file: str, data: bytes, image: Image.Image, limits: ImportLimits) -> ImageFacts | Rejection:
    """Check the identified image's format and size, then decode every pixel."""
    image_format = image.format or "unknown"
    if image_format not in ALLOWED_FORMATS:
        allowed = ", ".join(sorted({*ALLOWED_FORMATS} - {"MPO"}))
        return Rejection(file, RejectReason.UNSUPPORTED_FORMAT, f"{image_format} images are not supported ({allowed})")
    width, height = image.size
    try:
        image.load()
        perceptual = dhash(image)
    # Truncated or corrupt data surfaces as many exception types from the decoders.
    except Exception as error:  # noqa: BLE001
        return Rejection(file, RejectReason.CORRUPT_IMAGE, f"truncated or corrupt {image_format} ({_describe(error)})")
    return ImageFacts(
        sha256=hashlib.sha256(data).hexdigest(),
        extension=ALLOWED_FORMATS[image_format],
        width=width,
        height=height,
        dhash=perceptual,
        size=len(data),
    )


def _describe(error: Exception) -> str:
    """A short, single-line description of a decoder error."""
    text = " ".join(str(error).split())[:120]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
