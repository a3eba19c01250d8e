"""Attribution maps as people and programs read them: a heatmap overlay PNG and a low-resolution grid (pure)."""

from __future__ import annotations

import io
import math

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch.nn import functional

from autovision.preprocess import PixelArray

# The overlay is enlarged (nearest neighbour) to at least this side, so that 8 px digits stay visible.
MIN_OVERLAY_SIDE = 128
# How much of the heatmap shows over the image where the attribution is largest.
OVERLAY_OPACITY = 0.6
GRID_DECIMALS = 3


def normalised(attribution: torch.Tensor) -> torch.Tensor:
    """A map scaled to [0, 1] by its maximum (all zeros stays zeros)."""
    peak = attribution.max()
    return attribution / peak if float(peak) > 0 else torch.zeros_like(attribution)


def attribution_grid(attribution: torch.Tensor, side: int) -> list[list[float]]:
    """The map's mean over ``side`` x ``side`` cells, scaled to [0, 1]: the API's and evaluation's grid."""
    cells = functional.adaptive_avg_pool2d(attribution[None, None].float(), side)[0, 0]
    return [[round(float(value), GRID_DECIMALS) for value in row] for row in normalised(cells)]


def _heat_colours(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A heat ramp: black, red, then yellow as ``values`` go from 0 to 1 (H, W, 3 floats)."""
    colours: npt.NDArray[np.float64] = np.clip(np.stack([2 * values, 2 * values - 1, 0 * values], axis=-1), 0, 1)
    return colours


def overlay_png(pixels: PixelArray, attribution: torch.Tensor) -> bytes:
    """The image (HWC uint8, the model's input) with the map blended over it in proportion to its value, as PNG."""
    if pixels.shape[:2] != tuple(attribution.shape):
        raise ValueError(f"map {tuple(attribution.shape)} does not match the image {pixels.shape[:2]}")
    values = normalised(attribution).numpy().astype(np.float64)
    alpha = (OVERLAY_OPACITY * values)[..., None]
    blended = (1 - alpha) * (pixels / 255.0) + alpha * _heat_colours(values)
    image = Image.fromarray(np.round(blended * 255).astype(np.uint8), mode="RGB")
    scale = math.ceil(MIN_OVERLAY_SIDE / max(image.size))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
