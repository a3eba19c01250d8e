"""The import's rules: limits, label names, and the reasons a file is rejected.

Pure definitions shared by every source and by the report. A *rejection* drops one
file and is listed in report.json; a ``DatasetImportError`` refuses the whole
import with one readable line and writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from autovision.preprocess import ImageLimits

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,32}$")
# A Kubernetes object name (DNS subdomain, up to 63 here) or a CLI name with "_" or capitals.
DATASET_NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
MIN_IMAGES_PER_LABEL = 10
FEW_IMAGES_PER_LABEL = 100
# AutoML Vision: "works best when there are at most 100x more images for the most
# common label than for the least common label".
MAX_RECOMMENDED_IMBALANCE = 100
MIN_LABELS = 2


class DatasetImportError(ValueError):
    """The whole import is refused; the message says why in one line."""


class RejectReason(StrEnum):
    """Why one file was left out: a stable code for report.json and status."""

    NOT_AN_IMAGE = "not_an_image"
    CORRUPT_IMAGE = "corrupt_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    IMAGE_TOO_LARGE = "image_too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    INVALID_LABEL = "invalid_label"
    BAD_PATH = "bad_path"
    UNREADABLE = "unreadable"
    BAD_ENCODING = "bad_encoding"
    LINE_TOO_LONG = "line_too_long"
    WRONG_COLUMN_COUNT = "wrong_column_count"
    UNKNOWN_SET = "unknown_set"
    UNSUPPORTED_URI = "unsupported_uri"
    MISSING_FILE = "missing_file"
    DUPLICATE_ROW = "duplicate_row"


@dataclass(frozen=True, slots=True)
class Rejection:
    """One file (or CSV row) left out of the import, and why."""

    file: str
    reason: RejectReason
    message: str
    line: int | None = None

    def as_json(self) -> dict[str, object]:
        """The report.json form of this rejection."""
        entry: dict[str, object] = {"file": self.file, "reason": self.reason.value, "message": self.message}
        if self.line is not None:
            entry["line"] = self.line
        return entry


@dataclass(frozen=True)
class ImportLimits:
    """Caps that keep hostile or huge input from exhausting memory, disk or time.

    The per-image caps are the one image policy's (``ImageLimits``), which serving
    applies too; ``from_image_limits`` takes them from the settings. The zip caps bound what
    an archive may expand to: entries larger than ``ratio_floor_bytes`` may not
    compress better than ``max_compression_ratio``; the floor exists because tiny
    flat images compress extremely well and can never amount to a bomb.
    """

    max_image_bytes: int = ImageLimits().max_bytes
    max_total_bytes: int = 20 * 1024**3
    max_compression_ratio: int = 200
    ratio_floor_bytes: int = 1024 * 1024
    max_entries: int = 2_000_000
    max_pixels: int = ImageLimits().max_pixels
    max_csv_line_bytes: int = 64 * 1024

    @classmethod
    def from_image_limits(cls, image: ImageLimits) -> ImportLimits:
        """The default caps with the image policy's per-image limits."""
        return cls(max_image_bytes=image.max_bytes, max_pixels=image.max_pixels)

    def image_limits(self) -> ImageLimits:
        """The per-image caps as the image policy the decoder applies."""
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_pixels)


def label_problem(label: str) -> str | None:
    """Why a label name is not allowed (AutoML's rule), or None when it is fine."""
    if LABEL_PATTERN.match(label):
        return None
    return f"label {label[:40]!r} is not 1-32 characters of [A-Za-z0-9_]"


def check_dataset_name(name: str) -> None:
    """Refuse dataset names that could not be storage key components (or resource names).

    A name may have a scope, ``SCOPE/NAME``: the operator stores each Dataset
    under its namespace, so equal names in two namespaces never share data.
    """
    parts = name.split("/")
    if len(parts) > 2 or not all(DATASET_NAME_PATTERN.match(part) and ".." not in part for part in parts):
        raise DatasetImportError(
            f"dataset name {name[:80]!r} must be 1-63 letters, digits, '-', '_' or single '.', "
            "starting and ending with a letter or digit (optionally after a SCOPE/ of the same form)"
        )
