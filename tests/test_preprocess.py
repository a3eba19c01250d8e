"""The one image policy and decoder: limits checked from the header, odd modes, reduced-size JPEG decoding."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from autovision.preprocess import (
    DECODE_BYTES_PER_PIXEL,
    PILLOW_MAX_PIXELS,
    ImageLimitError,
    ImageLimits,
    PreprocessConfig,
    decode_image,
    load_pixels,
    open_image,
    preprocess_bytes,
)

SMALL = ImageLimits(max_bytes=100_000, max_pixels=40 * 25)


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_images_at_each_limit_pass_and_one_over_is_refused_naming_it(flat_png: Callable[..., bytes]) -> None:
    assert decode_image(flat_png(40, 25), SMALL).size == (40, 25)
    with pytest.raises(ImageLimitError, match="41x25 pixels exceeds the 1000-pixel limit"):
        decode_image(flat_png(41, 25), SMALL)
    data = flat_png(10, 10)
    assert decode_image(data, ImageLimits(max_bytes=len(data))).size == (10, 10)
    with pytest.raises(ImageLimitError, match=f"exceeds the {len(data) - 1}-byte limit"):
        decode_image(data, ImageLimits(max_bytes=len(data) - 1))


@pytest.mark.parametrize(
    ("width", "height"),
    [(10_000, 10_000), (15_000, 15_000), (100_000, 100_000)],
    ids=["pillow-warning-range", "pillow-error-range", "far-beyond"],
)
def test_a_tiny_file_claiming_huge_dimensions_is_refused_before_decoding(
    claimed_png: Callable[[int, int], bytes], width: int, height: int
) -> None:
    data = claimed_png(width, height)
    assert len(data) < 100
    with pytest.raises(ImageLimitError, match=f"exceeds the {PILLOW_MAX_PIXELS}-pixel limit"):
        preprocess_bytes(data, PreprocessConfig(size=8))


def test_pillow_warning_range_is_the_policys_to_allow(claimed_png: Callable[[int, int], bytes]) -> None:
    """Up to twice Pillow's threshold the policy decides: opening neither warns nor decodes."""
    data = claimed_png(12_000, 12_000)  # 144 Mpx: Pillow only warns
    with pytest.raises(ImageLimitError, match="12000x12000 pixels exceeds the 89478485-pixel limit"):
        open_image(data, ImageLimits())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert open_image(data, ImageLimits(max_pixels=2 * PILLOW_MAX_PIXELS)).size == (12_000, 12_000)
    with pytest.raises(ValueError, match="max_pixels"):
        ImageLimits(max_pixels=2 * PILLOW_MAX_PIXELS + 1)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "LA", "P"])
def test_odd_modes_decode_to_rgb(mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    image = Image.new(mode, (30, 20))
    array = preprocess_bytes(_encoded(image, fmt), PreprocessConfig(size=8))
    assert array.shape == (3, 8, 8)
    assert array.dtype == np.float32


def test_decode_slots_follow_the_budget() -> None:
    limits = ImageLimits(max_pixels=1_000_000)
    assert limits.decode_bytes() == 1_000_000 * DECODE_BYTES_PER_PIXEL
    assert limits.decode_slots(limits.decode_bytes() * 3 + 1) == 3
    assert limits.decode_slots(1) == 1  # a process can always decode one image


def test_large_jpegs_decode_at_reduced_scale_with_near_pixels(photo_jpeg: Callable[[int, int], bytes]) -> None:
    data = photo_jpeg(1600, 1200)
    assert decode_image(data, ImageLimits(), size=224).size == (800, 600)  # 1/2 scale keeps >= 2 x 224
    assert decode_image(data, ImageLimits(), size=96).size == (400, 300)
    full = np.asarray(decode_image(data, ImageLimits()).resize((96, 96), Image.Resampling.BILINEAR), dtype=np.float32)
    reduced = load_pixels(data, 96, ImageLimits()).astype(np.float32)
    assert np.abs(full - reduced).mean() < 2.0
