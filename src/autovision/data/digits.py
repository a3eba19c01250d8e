"""The quickstart's bundled real data: scikit-learn's handwritten digits as a zip.

scikit-learn ships the 1,797 8x8 UCI digits with every install, so a fresh
machine can run the whole path offline. They are written out exactly as a user
would upload images: one PNG per image in a folder named after its label.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def digits_zip_bytes() -> bytes:
    """A deterministic zip of ``digit_N/NNNN.png`` images (byte-identical every call)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            grey = np.clip(pixels * (255.0 / 16.0), 0, 255).astype(np.uint8)
            png = io.BytesIO()
            Image.fromarray(grey, mode="L").save(png, format="PNG")
            info = zipfile.ZipInfo(f"digit_{target}/{index:04d}.png", date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info, png.getvalue())
    return buffer.getvalue()


def write_digits_zip(path: Path) -> Path:
    """Write the digits zip atomically (the quickstart reuses it when present)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(digits_zip_bytes())
        temporary.replace(path)
    return path
