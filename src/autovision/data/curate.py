"""From validated files to the distinct images of a version, with labels and splits.

Pure logic: exact duplicates (same sha256) are kept once; the same image under
different labels is merged for multi-label data and held out (kept, never
trained on) for single-label data; splits come from the source where it fixes
them and from the deterministic stratified split otherwise.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from autovision.contract.files import DATASET_FORMAT
from autovision.data.manifest import SPLITS, UNASSIGNED, SplitName
from autovision.data.split import SplitSettings, stratified_split
from autovision.data.validate import ImageFacts


@dataclass(frozen=True, slots=True)
class Entry:
    """A file that passed validation, with the labels and split its source gave it."""

    file: str
    labels: tuple[str, ...]
    split: SplitName | None
    facts: ImageFacts


@dataclass(frozen=True, slots=True)
class DistinctImage:
    """One distinct image of the version: its first file, merged labels and fixed split."""

    file: str
    labels: tuple[str, ...]
    split: SplitName | None
    held_out: bool
    facts: ImageFacts


@dataclass
class Curated:
    """The distinct images, and what deduplication found on the way."""

    images: list[DistinctImage] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    split_clashes: list[dict[str, Any]] = field(default_factory=list)


def curate(entries: Iterable[Entry], multi_label: bool) -> Curated:
    """Keep each distinct image once, merging or holding out conflicting labels."""
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        groups[entry.facts.sha256].append(entry)
    curated = Curated()
    for members in groups.values():
        members.sort(key=lambda entry: entry.file)
        curated.images.append(_merge(members, multi_label, curated))
    curated.images.sort(key=lambda image: image.file)
    return curated


def _merge(members: list[Entry], multi_label: bool, curated: Curated) -> DistinctImage:
    """One distinct image from the files that share its bytes; records what was found."""
    first = members[0]
    labels = tuple(sorted({label for entry in members for label in entry.labels}))
    held_out = len(labels) > 1 and not multi_label
    if held_out:
        curated.conflicts.append(
            {"sha256": first.facts.sha256, "files": [entry.file for entry in members], "labels": list(labels)}
        )
    else:
        curated.duplicates.extend({"file": entry.file, "duplicateOf": first.file} for entry in members[1:])
    fixed = sorted({entry.split for entry in members if entry.split}, key=SPLITS.index)
    if len(fixed) > 1:
        curated.split_clashes.append({"file": first.file, "splits": list(fixed), "keptIn": fixed[0]})
    return DistinctImage(first.file, labels, fixed[0] if fixed else None, held_out, first.facts)


def assign_splits(images: list[DistinctImage], settings: SplitSettings) -> tuple[dict[str, SplitName], list[SplitName]]:
    """Each image's split (sha256 -> split), and the splits that had to be taken from train.

    Unlabelled and held-out images are unassigned. When the source fixes splits
    but leaves validation or test empty, their share is taken from train,
    stratified, so that early stopping, the search and the evaluation have data.
    """
    splits: dict[str, SplitName] = {}
    automatic: list[tuple[str, tuple[str, ...]]] = []
    for image in images:
        if image.held_out or not image.labels:
            splits[image.facts.sha256] = UNASSIGNED
        elif image.split:
            splits[image.facts.sha256] = image.split
        else:
            automatic.append((image.facts.sha256, image.labels))
    splits.update(stratified_split(automatic, settings.percentages, settings.seed))
    if not any(image.split for image in images):
        return splits, []
    present = set(splits.values())
    carved: list[SplitName] = [
        name
        for name, percent in zip(SPLITS[1:], settings.percentages[1:], strict=True)
        if percent and name not in present
    ]
    if carved:
        train = [(image.facts.sha256, image.labels) for image in images if splits[image.facts.sha256] == "train"]
        shares = tuple(
            percent if name in carved else 0 for name, percent in zip(SPLITS, settings.percentages, strict=True)
        )
        splits.update(stratified_split(train, (settings.train, shares[1], shares[2]), settings.seed))
    return splits, carved


def content_version(task: str, images: list[DistinctImage], splits: dict[str, SplitName]) -> str:
    """Content address of a version: its format, the task and each image's bytes, labels and split."""
    digest = hashlib.sha256(f"format\t{DATASET_FORMAT}\ntask\t{task}\n".encode())
    for image in sorted(images, key=lambda image: image.facts.sha256):
        sha256 = image.facts.sha256
        digest.update(f"{sha256}\t{','.join(image.labels)}\t{splits[sha256]}\n".encode())
    return f"sha256-{digest.hexdigest()[:32]}"
