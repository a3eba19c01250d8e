"""Perceptual hashing of images (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autovision.data.validate import dhash


@pytest.mark.parametrize(("direction", "expected"), [(1, 2**64 - 1), (-1, 0)])
def test_dhash_of_a_gradient(direction: int, expected: int) -> None:
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8)[::direction], (64, 1))
    assert dhash(Image.fromarray(ramp, mode="L")) == expected


def test_dhash_survives_resizing_and_recompression() -> None:
    ramp = np.add.outer(np.arange(64), np.arange(64) ** 1.5 % 97).astype(np.uint8)
    image = Image.fromarray(ramp, mode="L").convert("RGB")
    smaller = image.resize((40, 40), Image.Resampling.BILINEAR).quantize(32).convert("RGB")
    assert bin(dhash(image) ^ dhash(smaller)).count("1") <= 4
