"""An evaluation's files in the model directory: evaluation.json, confusion_matrix.csv and report.html."""

from __future__ import annotations

from typing import Any

from autovision.contract.keys import CONFUSION_MATRIX_FILE, EVALUATION_FILE, REPORT_FILE
from autovision.evaluate.tables import confusion_matrix_csv
from autovision.export.layout import ModelLocation
from autovision.report import render_report, thumbnail_data_uri
from autovision.storage import Storage, StorageError, StorageUnavailableError, read_uris


def write_evaluation_files(
    storage: Storage,
    model_dir: ModelLocation,
    evaluation: dict[str, Any],
    title: str,
    facts: list[tuple[str, str]],
    *,
    overlays: dict[str, str] | None = None,
) -> None:
    """evaluation.json, confusion_matrix.csv (single-label) and report.html (with thumbnails of the top mistakes
    and the heatmap ``overlays`` by image URI)."""
    storage.write_json(model_dir.key(EVALUATION_FILE), evaluation)
    if evaluation["confusionMatrix"] is not None:
        storage.write_bytes(model_dir.key(CONFUSION_MATRIX_FILE), confusion_matrix_csv(evaluation).encode())
    thumbnails = mistake_thumbnails(storage, evaluation)
    report = render_report(evaluation, title=title, facts=facts, thumbnails=thumbnails, overlays=overlays)
    storage.write_bytes(model_dir.key(REPORT_FILE), report.encode())


def mistake_thumbnails(storage: Storage, evaluation: dict[str, Any]) -> dict[str, str]:
    """Data URIs of the top mistakes' images; none when the dataset's images cannot be read."""
    uris = [mistake["uri"] for mistake in evaluation["mostConfidentMistakes"]]
    try:
        images = read_uris(uris, storage.settings)
    except StorageUnavailableError:  # so is the storage the report goes to: the Job retries
        raise
    except StorageError:  # the report is still worth writing without pictures
        return {}
    thumbnails = {uri: thumbnail_data_uri(data) for uri, data in zip(uris, images, strict=True)}
    return {uri: thumbnail for uri, thumbnail in thumbnails.items() if thumbnail}
