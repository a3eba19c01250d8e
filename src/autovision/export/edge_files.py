"""What every edge format shares: the input it documents, its one error, and atomic writes.

An edge file is loaded by an app with nothing else beside it, so each one carries its
labels and the input's size, mean and std. A format that cannot express the model fails
alone (``EdgeExportError`` naming the op) and leaves no file behind.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# How many images int8 calibration reads, for the int8 ONNX and the int8 .tflite alike: enough for the observers'
# ranges.
CALIBRATION_IMAGES = 256

# torch.export names operators like ``aten.upsample_bicubic2d.default``.
_OP_NAME = re.compile(r"\b(?:aten|prims|torch\.ops\.\w+)\.[A-Za-z_0-9]+")


class EdgeExportError(RuntimeError):
    """One edge format could not be written; the others and the run are unaffected."""


@dataclass(frozen=True)
class EdgeInput:
    """What an app must know to feed the model: class labels, square size, RGB mean and std (0..1 scale)."""

    labels: tuple[str, ...]
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def failed_op(error: BaseException) -> str:
    """The operator a converter's error names (searching its causes too), or the error's type."""
    current: BaseException | None = error
    while current is not None:
        match = _OP_NAME.search(str(current))
        if match:
            return match.group(0)
        current = current.__cause__ or current.__context__
    return type(error).__name__


def write_atomically(path: Path, fmt: str, write: Callable[[Path], None]) -> Path:
    """Run ``write`` on a temporary path beside ``path`` and move the result into place only if it succeeds.

    Any failure becomes one ``EdgeExportError`` naming the format and the operator,
    and nothing is left at ``path`` (a file or a directory such as ``.mlpackage``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    staged = workdir / path.name
    try:
        write(staged)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(staged, path)
    except Exception as error:
        raise EdgeExportError(f"{fmt} export failed at {failed_op(error)}: {error}") from error
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return path
