"""Where label folders put labels and splits: ``LABEL/FILE`` or ``SPLIT/LABEL/FILE``.

Pure path logic shared by zips and storage prefixes. One wrapping folder (what
zipping a folder produces: ``flowers/daisy/1.jpg``) is looked through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autovision.data.manifest import SplitName
from autovision.data.rules import Rejection, RejectReason, label_problem

SPLIT_FOLDERS: dict[str, SplitName] = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "test": "test",
}
_JUNK_PREFIXES = (".", "__MACOSX")


@dataclass(frozen=True)
class FolderLayout:
    """How to read a path: a wrapping folder to look through, and whether splits are folders."""

    root: str = ""
    split_folders: bool = False


def is_ignored(path: str) -> bool:
    """Dot files and macOS resource forks: never images, skipped without a rejection."""
    return any(part.startswith(_JUNK_PREFIXES) for part in path.split("/"))


def detect_layout(paths: Iterable[str]) -> FolderLayout:
    """The layout every path of a source is read with, in one pass over the paths (none is kept)."""
    tops: set[str] = set()
    all_deep = True
    splits_at_top = splits_below_top = False
    for path in paths:
        parts = path.split("/")
        tops.add(parts[0])
        all_deep = all_deep and len(parts) >= 3
        splits_at_top = splits_at_top or (len(parts) >= 3 and parts[0].lower() in SPLIT_FOLDERS)
        splits_below_top = splits_below_top or (len(parts) >= 4 and parts[1].lower() in SPLIT_FOLDERS)
    if len(tops) == 1 and all_deep and next(iter(tops)).lower() not in SPLIT_FOLDERS:
        return FolderLayout(root=f"{next(iter(tops))}/", split_folders=splits_below_top)
    return FolderLayout(root="", split_folders=splits_at_top)


def place(path: str, layout: FolderLayout) -> tuple[str, SplitName | None] | Rejection:
    """The (label, fixed split) a path stands for, or why it stands for none."""
    parts = path.removeprefix(layout.root).split("/")
    if layout.split_folders:
        if len(parts) != 3 or parts[0].lower() not in SPLIT_FOLDERS:
            return Rejection(
                path, RejectReason.BAD_PATH, "expected SPLIT/LABEL/FILE (SPLIT: train, validation, val, test)"
            )
        split: SplitName | None = SPLIT_FOLDERS[parts[0].lower()]
        label = parts[1]
    else:
        if len(parts) != 2:
            return Rejection(path, RejectReason.BAD_PATH, "expected LABEL/FILE")
        split, label = None, parts[0]
    problem = label_problem(label)
    if problem:
        return Rejection(path, RejectReason.INVALID_LABEL, problem)
    return label, split
