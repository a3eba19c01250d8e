"""The import report (report.json), its warnings, and the checks that refuse an import.

Pure: counts in, a JSON-ready dict out. The operator reads ``total, kept,
rejected, duplicates, conflicts, perLabel``; the rest is for people: why each file
was rejected, which files were duplicates or near-duplicates, and warnings that
the operator turns into conditions. Long lists are cut at ``LIST_LIMIT`` entries;
their counts are always complete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autovision.data.curate import Curated
from autovision.data.manifest import SPLITS, ImageRecord
from autovision.data.near_duplicates import NearDuplicate
from autovision.data.rules import (
    FEW_IMAGES_PER_LABEL,
    MAX_RECOMMENDED_IMBALANCE,
    MIN_IMAGES_PER_LABEL,
    MIN_LABELS,
    DatasetImportError,
    Rejection,
)

LIST_LIMIT = 1000
# What ``autovision dataset import/describe`` prints, besides the per-label table.
SUMMARY_KEYS = (
    "name",
    "version",
    "task",
    "total",
    "kept",
    "trainable",
    "unlabelled",
    "rejected",
    "duplicates",
    "nearDuplicates",
    "conflicts",
    "imbalanceRatio",
    "rejectReasons",
    "perLabel",
    "warnings",
)


@dataclass(frozen=True)
class ImportFindings:
    """Everything an import found, gathered for the report."""

    name: str
    version: str
    task: str
    source: str
    total: int
    ignored: int
    rejects: Sequence[Rejection]
    curated: Curated
    near_duplicates: Sequence[NearDuplicate]
    taken_from_train: Sequence[str]


def per_label_counts(records: Sequence[ImageRecord]) -> dict[str, dict[str, int]]:
    """Images of each label in each training split (multi-label images count once per label)."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        if record.split in SPLITS:
            for label in record.labels:
                counts.setdefault(label, dict.fromkeys(SPLITS, 0))[record.split] += 1
    return dict(sorted(counts.items()))


def check_trainable(report: dict[str, Any]) -> None:
    """Refuse an import a classifier cannot be trained on, with the reason in one line."""
    totals = {label: sum(splits.values()) for label, splits in report["perLabel"].items()}
    if not totals:
        reasons = ", ".join(f"{count} {reason}" for reason, count in report["rejectReasons"].items())
        detail = f": {report['rejected']} of {report['total']} files rejected ({reasons})" if reasons else ""
        raise DatasetImportError(f"no labelled images could be imported{detail}")
    if len(totals) < MIN_LABELS:
        raise DatasetImportError(f"a classifier needs at least {MIN_LABELS} labels, found only {next(iter(totals))!r}")
    small = [f"{label} ({count})" for label, count in totals.items() if count < MIN_IMAGES_PER_LABEL]
    if small:
        raise DatasetImportError(f"labels with fewer than {MIN_IMAGES_PER_LABEL} images: {', '.join(small)}")


def build_report(findings: ImportFindings, records: Sequence[ImageRecord]) -> dict[str, Any]:
    """The report.json of an import."""
    curated = findings.curated
    per_label = per_label_counts(records)
    totals = [sum(splits.values()) for splits in per_label.values()]
    files = [image.file for image in curated.images]
    report: dict[str, Any] = {
        "name": findings.name,
        "version": findings.version,
        "task": findings.task,
        "source": findings.source,
        "total": findings.total,
        "ignored": findings.ignored,
        "kept": len(records),
        "trainable": sum(record.split in SPLITS for record in records),
        "unlabelled": sum(not record.labels for record in records),
        "rejected": len(findings.rejects),
        "duplicates": len(curated.duplicates),
        "nearDuplicates": len(findings.near_duplicates),
        "conflicts": len(curated.conflicts),
        "perLabel": per_label,
        "imbalanceRatio": round(max(totals) / min(totals), 3) if totals else None,
        "rejectReasons": dict(sorted(Counter(reject.reason.value for reject in findings.rejects).items())),
        "rejects": [reject.as_json() for reject in findings.rejects[:LIST_LIMIT]],
        "duplicateFiles": curated.duplicates[:LIST_LIMIT],
        "nearDuplicateFiles": [
            {"file": files[near.index], "similarTo": files[near.similar_to], "distance": near.distance}
            for near in findings.near_duplicates[:LIST_LIMIT]
        ],
        "conflictingLabels": curated.conflicts[:LIST_LIMIT],
        "splitClashes": len(curated.split_clashes),
        "splitClashFiles": curated.split_clashes[:LIST_LIMIT],
        "splitsFromTrain": list(findings.taken_from_train),
        "listLimit": LIST_LIMIT,
    }
    report["warnings"] = warnings(report)
    return report


def warnings(report: dict[str, Any]) -> list[dict[str, str]]:
    """Conditions worth a user's attention that do not refuse the import."""
    found: list[dict[str, str]] = []

    def warn(reason: str, message: str) -> None:
        found.append({"reason": reason, "message": message})

    few = [label for label, splits in report["perLabel"].items() if sum(splits.values()) < FEW_IMAGES_PER_LABEL]
    if few:
        warn("FewImages", f"{len(few)} label(s) under {FEW_IMAGES_PER_LABEL} images: {', '.join(few[:20])}")
    if (report["imbalanceRatio"] or 0) > MAX_RECOMMENDED_IMBALANCE:
        warn("ImbalancedLabels", f"the largest label has {report['imbalanceRatio']}x the images of the smallest")
    if report["rejected"]:
        warn("RejectedFiles", f"{report['rejected']} file(s) rejected: see rejects in report.json")
    if report["conflicts"]:
        warn("ConflictingLabels", f"{report['conflicts']} image(s) appear under different labels: held out of training")
    if report["nearDuplicates"]:
        warn("NearDuplicates", f"{report['nearDuplicates']} image(s) look like near-duplicates of others")
    if report["unlabelled"]:
        warn("UnlabelledImages", f"{report['unlabelled']} image(s) have no label: kept, not trained on")
    if report["splitClashes"]:
        warn("ImagesInSeveralSplits", f"{report['splitClashes']} image(s) are in more than one split folder")
    if report["splitsFromTrain"]:
        taken = " and ".join(report["splitsFromTrain"])
        warn("SplitsFromTrain", f"the source has no {taken} images: {taken} taken from train")
    return found


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of a report the CLI prints (as a table, or as one JSON object)."""
    return {key: report.get(key) for key in SUMMARY_KEYS}
