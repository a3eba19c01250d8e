"""The review set: the least confident logged predictions whose images were stored, as an AutoML import CSV.

Pure: records in (``LoggedPrediction``, as the gateway's prediction log writes them),
rows out. A record counts once per image (its sha256; the least confident of its
sightings), only if its image was stored, ordered by its top-1 score, lowest first
(ties by sha256, so that the same log always gives the same set). Each row is
``UNASSIGNED,<image URI>``: the AutoML Vision CSV our importer reads
(``data.sources.csv_index``) with no label yet, so the importer splits it itself
once a person appends each row's label (``UNASSIGNED,<URI>,<label>``); a row left
without one imports as an unlabelled image.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence

from autovision.contract.files import LoggedPrediction

UNASSIGNED = "UNASSIGNED"


class ReviewSetError(ValueError):
    """A review set cannot be made from this log: it holds no predictions, or none with a stored image."""


def confidence(record: LoggedPrediction) -> float:
    """How sure the model was: its top-1 score (0 for an answer with no labels)."""
    return max((item.score for item in record.top), default=0.0)


def least_confident(records: Iterable[LoggedPrediction], count: int, where: str) -> list[LoggedPrediction]:
    """The ``count`` least confident records with stored images, one per sha256; ReviewSetError naming ``where``
    (the log's location) when it logged nothing, or no images."""
    if count < 1:
        raise ReviewSetError(f"a review set needs at least 1 image, got {count}")
    seen = 0
    by_image: dict[str, LoggedPrediction] = {}
    for record in records:
        seen += 1
        if not record.image_stored:
            continue
        kept = by_image.get(record.sha256)
        if kept is None or confidence(record) < confidence(kept):
            by_image[record.sha256] = record
    if seen == 0:
        raise ReviewSetError(f"{where} holds no logged predictions: log some first (spec.logging, serve --log-rate)")
    if not by_image:
        raise ReviewSetError(
            f"{where} holds {seen} logged prediction(s) but no stored image: log images too "
            "(spec.logging.images, serve --log-images)"
        )
    return sorted(by_image.values(), key=lambda record: (confidence(record), record.sha256))[:count]


def review_csv(records: Sequence[LoggedPrediction], image_uri: Callable[[str], str]) -> bytes:
    """The AutoML import CSV of ``records``: ``UNASSIGNED,<URI>`` per row, the URI ``image_uri(sha256)``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in records:
        writer.writerow([UNASSIGNED, image_uri(record.sha256)])
    return buffer.getvalue().encode()
