"""Images made by the tests: headers that claim any size, and flat images large in pixels, small in bytes."""

from __future__ import annotations

import io
import struct
import zlib

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
