"""The dataset manifest: one JSON line per kept image, written last."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel

SplitName = Literal["train", "validation", "test"]
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


def dataset_prefix(name: str, version: str) -> str:
    """Storage prefix of one immutable dataset version."""
    return f"datasets/{name}/{version}"


def encode_manifest(records: list[ImageRecord]) -> bytes:
    return "".join(record.model_dump_json() + "\n" for record in records).encode()


def decode_manifest(data: bytes) -> list[ImageRecord]:
    return [ImageRecord.model_validate(json.loads(line)) for line in data.splitlines() if line]


def labels_of(records: list[ImageRecord]) -> list[str]:
    """The dataset's label set, sorted: the model's output order."""
    return sorted({label for record in records for label in record.labels})
