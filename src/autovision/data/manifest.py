"""The dataset manifest: one JSON line per kept image, written last."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel

# "unassigned": kept in the version but never trained or evaluated on (unlabelled
# images, and images held out because they carry conflicting labels).
SplitName = Literal["train", "validation", "test", "unassigned"]
UNASSIGNED: SplitName = "unassigned"
# The splits a model is trained, tuned and evaluated on, in that order.
SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")


class ImageRecord(BaseModel):
    """One image of a dataset version, as the trainer reads it."""

    uri: str
    sha256: str
    labels: list[str]
    split: SplitName
    width: int
    height: int
    source: str = ""


def encode_manifest(records: list[ImageRecord]) -> bytes:
    """The manifest.jsonl bytes of a version (one record per line)."""
    return "".join(record.model_dump_json() + "\n" for record in records).encode()


def decode_manifest(data: bytes) -> list[ImageRecord]:
    """Read manifest.jsonl bytes back into records."""
    return [ImageRecord.model_validate(json.loads(line)) for line in data.splitlines() if line]


def labels_of(records: list[ImageRecord]) -> list[str]:
    """The dataset's label set, sorted: the model's output order.

    Only images in a training split count, so a label seen only on held-out images
    never becomes a class without examples.
    """
    return sorted({label for record in records if record.split in SPLITS for label in record.labels})
