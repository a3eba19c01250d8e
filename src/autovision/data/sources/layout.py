"""Where label folders put labels and splits: ``LABEL/FILE`` or ``SPLIT/LABEL/FILE``.

Pure path logic shared by zips and storage prefixes. One wrapping folder (what
zipping a folder produces: ``flowers/daisy/1.jpg``) is looked through.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def detect_layout(paths: Sequence[str]) -> FolderLayout:
    """The layout every path of a source is read with."""
    parts = [path.split("/") for path in paths]
    root = ""
    tops = {p[0] for p in parts}
    if len(tops) == 1 and all(len(p) >= 3 for p in parts) and next(iter(tops)).lower() not in SPLIT_FOLDERS:
        root = f"{next(iter(tops))}/"
        parts = [p[1:] for p in parts]
    split_folders = any(len(p) >= 3 and p[0].lower() in SPLIT_FOLDERS for p in parts)
    return FolderLayout(root=root, split_folders=split_folders)


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
