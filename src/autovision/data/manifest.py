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


def dataset_prefix(name: str, version: str) -> str:
    """Storage prefix of one immutable dataset version."""
    return f"datasets/{name}/{version}"


def manifest_key(name: str, version: str) -> str:
    """Storage key of one dataset version's manifest, written last: the version is complete once it exists."""
    return f"{dataset_prefix(name, version)}/manifest.jsonl"


def report_key(name: str, version: str) -> str:
    """Storage key of one dataset version's import report (read by the trainer and the operator)."""
    return f"{dataset_prefix(name, version)}/report.json"


def import_progress_key(name: str) -> str:
    """Storage key where a running import reports its stage and progress (read by the operator)."""
    return f"datasets/{name}/import-progress.json"


def latest_key(name: str) -> str:
    """Storage key of the pointer to a dataset's most recently imported version."""
    return f"datasets/{name}/latest.json"


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
