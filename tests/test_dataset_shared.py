"""The real data sets in ../shared/datasets: flowers.zip (12 planted problems) and cifar10.zip
(60,000 images, fixed split folders). Heavy: marked slow, skipped where ../shared is absent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autovision.data.importer import import_dataset
from autovision.data.manifest import SPLITS
from autovision.storage import Storage

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"{SHARED_DATASETS} is absent"),
]
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FORMAT_EXTENSIONS = {"format_png": "png", "format_gif": "gif", "format_bmp": "bmp"}


def _found(kind: str, planted: dict[str, Any], report: dict[str, Any], extensions: dict[str, str]) -> bool:
    """Whether the report shows one planted problem as the right kind."""
    path, original = planted["path"], planted.get("of")
    if kind == "exact_duplicate":
        return {"file": path, "duplicateOf": original} in report["duplicateFiles"]
    if kind == "near_duplicate":
        return any(n["file"] == path and n["similarTo"] == original for n in report["nearDuplicateFiles"])
    if kind == "cross_label_duplicate":
        return any(c["files"] == sorted([path, original]) for c in report["conflictingLabels"])
    reject: dict[str, str] = next((reject for reject in report["rejects"] if reject["file"] == path), {})
    if kind == "truncated_jpeg":
        return reject.get("reason") == "corrupt_image" and "truncated" in reject["message"]
    if kind == "not_an_image":
        return reject.get("reason") == "not_an_image"
    return extensions.get(path) == FORMAT_EXTENSIONS[kind]


def test_flowers_every_planted_problem_is_found(file_storage: Storage) -> None:
    planted = json.loads((SHARED_DATASETS / "flowers_planted.json").read_text())["planted"]
    result = import_dataset(str(SHARED_DATASETS / "flowers.zip"), "flowers", file_storage)
    report = result.report
    extensions = {record.source: record.uri.rsplit(".", 1)[1] for record in result.records}
    missed = [p["path"] for p in planted if not _found(p["kind"], p, report, extensions)]
    assert missed == []
    assert len(planted) == 12
    # Nothing beyond the planted problems is reported.
    assert (report["rejected"], report["duplicates"], report["nearDuplicates"], report["conflicts"]) == (2, 3, 2, 2)
    assert (report["total"], report["kept"], report["trainable"]) == (3865, 3858, 3856)
    assert sorted(report["perLabel"]) == ["daisy", "dandelion", "rose", "sunflower", "tulip"]

    again = import_dataset(str(SHARED_DATASETS / "flowers.zip"), "flowers", file_storage)
    assert (again.version, again.reused) == (result.version, True)


def test_cifar10_with_its_fixed_split(file_storage: Storage) -> None:
    result = import_dataset(str(SHARED_DATASETS / "cifar10.zip"), "cifar10", file_storage)
    report = result.report
    assert (report["total"], report["kept"], report["rejected"]) == (60_000, 60_000, 0)
    assert sorted(report["perLabel"]) == CIFAR10_LABELS
    for counts in report["perLabel"].values():
        # The official 5,000/1,000 split; validation is a stratified ninth of train (80:10).
        assert counts == {"train": 4444, "validation": 556, "test": 1000}
    assert report["splitsFromTrain"] == ["validation"]
    assert {record.split for record in result.records} == set(SPLITS)
    assert len(file_storage.list_keys(f"datasets/cifar10/{result.version}/images")) == 60_000
