from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from autovision.explain.render import MIN_OVERLAY_SIDE, attribution_grid, normalised, overlay_png


def test_the_grid_averages_cells_and_scales_to_one() -> None:
    attribution = torch.zeros(8, 8)
    attribution[:4, :4] = 2.0
    attribution[4:, 4:] = 1.0
    assert attribution_grid(attribution, 2) == [[1.0, 0.0], [0.0, 0.5]]
    assert attribution_grid(torch.zeros(8, 8), 2) == [[0.0, 0.0], [0.0, 0.0]]


def test_normalising_a_flat_map_gives_zeros() -> None:
    assert torch.equal(normalised(torch.zeros(3, 3)), torch.zeros(3, 3))


def test_the_overlay_is_a_png_enlarged_to_be_seen_and_hot_where_the_map_peaks() -> None:
    pixels = np.full((8, 8, 3), 128, dtype=np.uint8)
    attribution = torch.zeros(8, 8)
    attribution[2, 5] = 1.0
    image = Image.open(io.BytesIO(overlay_png(pixels, attribution)))
    assert image.format == "PNG"
    assert image.size == (MIN_OVERLAY_SIDE, MIN_OVERLAY_SIDE)
    scale = MIN_OVERLAY_SIDE // 8
    hot = image.getpixel((5 * scale, 2 * scale))
    cold = image.getpixel((0, 0))
    assert cold == (128, 128, 128)
    assert isinstance(hot, tuple)
    assert min(hot[:2]) > 200  # yellow: red and green
    assert hot[2] < 100


def test_an_overlay_refuses_a_map_of_another_size() -> None:
    with pytest.raises(ValueError, match="does not match"):
        overlay_png(np.zeros((8, 8, 3), dtype=np.uint8), torch.zeros(4, 4))
