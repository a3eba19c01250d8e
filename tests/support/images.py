"""Images made by the tests: headers that claim any size, flat images large in pixels, small in bytes, and many
distinct tiny ones fast."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = buffer.getvalue()
    header = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + header + struct.pack(">I", zlib.crc32(header)) + data[33:]


def flat_png_bytes(width: int, height: int, mode: str = "RGB") -> bytes:
    """A real PNG of one colour in any mode: large in pixels, small in bytes (a bomb within the limit)."""
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def noise_pngs(count: int, side: int = 8, seed: int = 0) -> list[bytes]:
    """``count`` distinct RGB noise PNGs of ``side`` x ``side`` pixels, written without Pillow (ten times faster
    for the tens of thousands the scale tests import; Pillow reads them like any PNG)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (count, side, 1 + 3 * side), dtype=np.uint8)
    pixels[:, :, 0] = 0  # each row's filter type: none
    header = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
    end = _png_chunk(b"IEND", b"")
    return [header + _png_chunk(b"IDAT", zlib.compress(image.tobytes(), 1)) + end for image in pixels]
