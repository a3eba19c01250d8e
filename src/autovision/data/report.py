"""The import report (report.json), its warnings, and the checks that refuse an import.

Pure: counts in, a JSON-ready dict out. The operator reads ``total, kept,
rejected, duplicates, conflicts, perLabel``; the rest is for people: why each file
was rejected, which files were duplicates or near-duplicates, and warnings that
the operator turns into conditions. Long lists are cut at ``LIST_LIMIT`` entries;
their counts are always complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from autovision.data.curate import Curated, Findings, SplitCodes, one_array
from autovision.data.manifest import SPLITS
from autovision.data.rules import (
    FEW_IMAGES_PER_LABEL,
    MAX_RECOMMENDED_IMBALANCE,
    MIN_IMAGES_PER_LABEL,
    MIN_LABELS,
    DatasetImportError,
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
    """Everything an import found, gathered for the report: counts, and the first ``LIST_LIMIT`` examples."""

    name: str
    version: str
    task: str
    source: str
    total: int
    ignored: int
    rejects: Findings
    reject_reasons: dict[str, int]
    curated: Curated
    near_duplicates: Findings
    taken_from_train: Sequence[str]
    split_codes: SplitCodes


def per_label_counts(labels: pa.Array, codes: SplitCodes) -> dict[str, dict[str, int]]:
    """Images of each label in each training split (multi-label images count once per label), from the
    images' label lists and split codes."""
    encoded = pc.dictionary_encode(pc.list_flatten(labels))
    names: list[str] = encoded.dictionary.to_pylist()
    pair_codes = codes[pc.list_parent_indices(labels).to_numpy()].astype(np.int64)
    ids = encoded.indices.to_numpy().astype(np.int64)
    trained = pair_codes < len(SPLITS)
    counts = np.bincount(ids[trained] * len(SPLITS) + pair_codes[trained], minlength=len(names) * len(SPLITS))
    table = counts.reshape(len(names), len(SPLITS)).tolist()
    return {
        names[label]: dict(zip(SPLITS, table[label], strict=True))
        for label in sorted(range(len(names)), key=names.__getitem__)
        if sum(table[label])
    }


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


def build_report(findings: ImportFindings) -> dict[str, Any]:
    """The report.json of an import."""
    curated = findings.curated
    codes = findings.split_codes
    labels = one_array(curated.images.column("labels"))
    per_label = per_label_counts(labels, codes)
    totals = [sum(splits.values()) for splits in per_label.values()]
    report: dict[str, Any] = {
        "name": findings.name,
        "version": findings.version,
        "task": findings.task,
        "source": findings.source,
        "total": findings.total,
        "ignored": findings.ignored,
        "kept": curated.images.num_rows,
        "trainable": int((codes < len(SPLITS)).sum()),
        "unlabelled": int((pc.list_value_length(labels).to_numpy() == 0).sum()),
        "rejected": findings.rejects.count,
        "duplicates": curated.duplicates.count,
        "nearDuplicates": findings.near_duplicates.count,
        "conflicts": curated.conflicts.count,
        "perLabel": per_label,
        "imbalanceRatio": round(max(totals) / min(totals), 3) if totals else None,
        "rejectReasons": dict(sorted(findings.reject_reasons.items())),
        "rejects": findings.rejects.examples,
        "duplicateFiles": curated.duplicates.examples,
        "nearDuplicateFiles": findings.near_duplicates.examples,
        "conflictingLabels": curated.conflicts.examples,
        "splitClashes": curated.split_clashes.count,
        "splitClashFiles": curated.split_clashes.examples,
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
