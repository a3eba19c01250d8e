"""The console's reads of storage: dataset versions, imports, runs and evaluations, for both sources.

A dataset version is immutable once its index exists, so its index is read once
(with pyarrow, columns only: no image is opened) and kept in a small cache; a
page of 60,000 images is then a slice of row numbers. Images are read one by one
as the page asks for them, by ``(version, sha256)`` through the index, never by a
path taken from a request. Runs are read from their progress.json, their study
journal (the live trials table) and, once finished, their model directory.
"""

from __future__ import annotations

import io
import posixpath
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from autovision.console.source import (
    DatasetPhase,
    DatasetRef,
    EvaluationView,
    ImageFilter,
    ImagePage,
    ImageQuery,
    ImageTile,
    ImportState,
    NotFoundError,
    RunDetail,
    RunPhase,
    RunRef,
    RunSummary,
)
from autovision.contract.files import ImportProgress, LatestVersion, ModelCard, Progress
from autovision.contract.keys import (
    EVALUATION_FILE,
    TEST_PREDICTIONS_FILE,
    import_progress_key,
    index_key,
    latest_key,
    model_card_key,
    model_dir_key,
    model_file_key,
    progress_key,
    report_key,
    run_prefix,
    shard_key,
    study_journal_key,
)
from autovision.data.manifest import UNASSIGNED, index_header
from autovision.storage import Storage, StorageError, member_uri, read_uris, split_member_uri

# Immutable version indexes kept in memory (each about 10 MB at 60,000 images).
INDEX_CACHE_SIZE = 4
# Scores sent to the Evaluate page are rounded to this many digits: smaller, and as exact as a slider needs.
SCORE_DIGITS = 4
IntArray = npt.NDArray[np.int64]
SHARD_NUMBER = re.compile(r"shard-(\d+)\.tar$")


@dataclass(frozen=True)
class VersionIndex:
    """The columns of a version's index the console pages through, kept as arrays, and lookups built once.

    Labels stay an Arrow list array and splits dictionary codes: turning 60,000 rows into Python
    lists would take most of a second; a page converts only its own rows.
    """

    sha256: list[str]
    labels: pa.ListArray
    split_codes: npt.NDArray[np.int32]
    split_names: list[str]
    width: npt.NDArray[np.int32]
    height: npt.NDArray[np.int32]
    source: pa.Array
    shard: npt.NDArray[np.int32]
    offset: npt.NDArray[np.int64]
    size: npt.NDArray[np.int64]
    row_of: dict[str, int]
    rows_of_label: dict[str, IntArray]

    @classmethod
    def from_parquet(cls, data: bytes) -> VersionIndex:
        """Read an index.parquet's columns (checked to be a format this AutoVision reads)."""
        index_header(data)
        table = pq.read_table(io.BytesIO(data))
        sha256 = table.column("sha256").to_pylist()
        labels = table.column("labels").combine_chunks()
        names = pc.dictionary_encode(labels.flatten()) if len(labels) else None
        parents = np.asarray(pc.list_parent_indices(labels), dtype=np.int64) if len(labels) else np.zeros(0, np.int64)
        rows_of_label: dict[str, IntArray] = {}
        if names is not None:
            codes = names.indices.to_numpy(zero_copy_only=False)
            for code, label in enumerate(names.dictionary.to_pylist()):
                rows_of_label[label] = np.unique(parents[codes == code])
        split = pc.dictionary_encode(table.column("split")).combine_chunks()
        return cls(
            sha256=sha256,
            labels=labels,
            split_codes=split.indices.to_numpy(zero_copy_only=False).astype(np.int32),
            split_names=[str(name) for name in split.dictionary.to_pylist()],
            width=table.column("width").to_numpy(),
            height=table.column("height").to_numpy(),
            source=table.column("source").combine_chunks(),
            shard=table.column("shard").to_numpy(),
            offset=table.column("offset").to_numpy(),
            size=table.column("size").to_numpy(),
            row_of={sha: row for row, sha in enumerate(sha256)},
            rows_of_label=dict(sorted(rows_of_label.items())),
        )

    def rows(self, label: str | None, split: str | None) -> IntArray:
        """Row numbers of the images with ``label`` (any when None) in ``split`` (any when None), in index order."""
        if label is None:
            found = np.arange(len(self.sha256), dtype=np.int64)
        else:
            found = self.rows_of_label.get(label, np.zeros(0, dtype=np.int64))
        if split is not None:
            code = self.split_names.index(split) if split in self.split_names else -1
            found = found[self.split_codes[found] == code]
        return found

    def row_of_source(self) -> dict[str, int]:
        """Each image's row by its file name in the source (what the report's lists name)."""
        return {source: row for row, source in enumerate(self.source.to_pylist())}

    def tile(self, row: int, note: str = "", pair: str | None = None) -> ImageTile:
        """The grid tile of one row."""
        return ImageTile(
            sha256=self.sha256[row],
            labels=self.labels[row].as_py(),
            split=self.split_names[self.split_codes[row]],
            width=int(self.width[row]),
            height=int(self.height[row]),
            source=self.source[row].as_py(),
            note=note,
            pair=pair,
        )


class ArtifactReader:
    """Reads what the importer and the trainer stored, for the console; ``dataset`` is the dataset's storage name."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._indexes: OrderedDict[tuple[str, str], VersionIndex] = OrderedDict()
        self._lock = threading.Lock()

    # --- datasets -------------------------------------------------------------

    def latest_version(self, dataset: str) -> str | None:
        """The version the dataset's last import made; None before its first."""
        key = latest_key(dataset)
        if not self.storage.exists(key):
            return None
        return LatestVersion.model_validate(self.storage.read_json(key)).version

    def import_progress(self, dataset: str) -> ImportProgress | None:
        """A running import's progress; None when none runs."""
        key = import_progress_key(dataset)
        try:
            return ImportProgress.model_validate(self.storage.read_json(key)) if self.storage.exists(key) else None
        except (StorageError, ValueError):  # being rewritten as we read it: the next poll sees it whole
            return None

    def import_state(self, dataset: str) -> ImportState:
        """Importing (with its stage) while import-progress.json exists, else Ready with the latest version."""
        progress = self.import_progress(dataset)
        if progress is not None:
            return ImportState(
                phase=DatasetPhase.IMPORTING,
                stage=progress.stage,
                completed=progress.completed,
                total=progress.total,
                detail=progress.detail,
            )
        version = self.latest_version(dataset)
        if version is None:
            raise NotFoundError(f"dataset {dataset!r} has no import")
        return ImportState(phase=DatasetPhase.READY, version=version)

    def report(self, dataset: str, version: str) -> dict[str, Any]:
        """A version's report.json."""
        key = report_key(dataset, version)
        if not self.storage.exists(key):
            raise NotFoundError(f"dataset {dataset!r} has no version {version}")
        report: dict[str, Any] = self.storage.read_json(key)
        return report

    def index(self, dataset: str, version: str) -> VersionIndex:
        """A version's index, read once and cached (a version never changes once its index exists)."""
        cache_key = (dataset, version)
        with self._lock:
            if cache_key in self._indexes:
                self._indexes.move_to_end(cache_key)
                return self._indexes[cache_key]
        key = index_key(dataset, version)
        if not self.storage.exists(key):
            raise NotFoundError(f"dataset {dataset!r} has no complete version {version}")
        index = VersionIndex.from_parquet(self.storage.read_bytes(key))
        with self._lock:
            self._indexes[cache_key] = index
            while len(self._indexes) > INDEX_CACHE_SIZE:
                self._indexes.popitem(last=False)
        return index

    def images(self, dataset: str, version: str, query: ImageQuery) -> ImagePage:
        """One page of the grid: by label and split from the index, or a filter's images from the report."""
        index = self.index(dataset, version)
        if query.filter in (ImageFilter.ALL, ImageFilter.UNASSIGNED):
            split = UNASSIGNED if query.filter is ImageFilter.UNASSIGNED else query.split
            rows = index.rows(query.label, split)
            page = rows[query.offset : query.offset + query.limit]
            return ImagePage(total=len(rows), offset=query.offset, tiles=[index.tile(int(row)) for row in page])
        tiles = self._report_tiles(index, self.report(dataset, version), query.filter)
        if query.label is not None:
            tiles = [tile for tile in tiles if query.label in tile.labels]
        return ImagePage(total=len(tiles), offset=query.offset, tiles=tiles[query.offset : query.offset + query.limit])

    @staticmethod
    def _report_tiles(index: VersionIndex, report: dict[str, Any], chosen: ImageFilter) -> list[ImageTile]:
        """The tiles of a filter the report lists (rejected files, near-duplicate pairs, conflicting labels)."""
        if chosen is ImageFilter.REJECTED:
            return [
                ImageTile(sha256=None, source=str(reject["file"]), note=f"{reject['reason']}: {reject['message']}")
                for reject in report.get("rejects", [])
            ]
        if chosen is ImageFilter.CONFLICTING:
            return [
                index.tile(index.row_of[conflict["sha256"]], note="labelled " + ", ".join(conflict["labels"]))
                for conflict in report.get("conflictingLabels", [])
                if conflict["sha256"] in index.row_of
            ]
        row_of_source = index.row_of_source()
        tiles = []
        for near in report.get("nearDuplicateFiles", []):
            row, other = row_of_source.get(near["file"]), row_of_source.get(near["similarTo"])
            if row is not None and other is not None:
                note = f"distance {near['distance']} from {near['similarTo']}"
                tiles.append(index.tile(row, note=note, pair=index.sha256[other]))
        return tiles

    def image_bytes(self, dataset: str, version: str, sha256: str) -> bytes:
        """One image's bytes, by its hash, from the shard the index places it in."""
        index = self.index(dataset, version)
        row = index.row_of.get(sha256)
        if row is None:
            raise NotFoundError(f"no image {sha256} in dataset {dataset!r} version {version}")
        shard = self.storage.uri(shard_key(dataset, version, int(index.shard[row])))
        extent = member_uri(shard, int(index.offset[row]), int(index.size[row]))
        return read_uris([extent], self.storage.settings)[0]

    # --- runs -------------------------------------------------------------------

    def progress(self, prefix: str) -> Progress | None:
        """A run's progress.json; None before the trainer wrote one."""
        key = progress_key(prefix)
        try:
            return Progress.model_validate(self.storage.read_json(key)) if self.storage.exists(key) else None
        except (StorageError, ValueError):
            return None

    def card(self, prefix: str) -> ModelCard | None:
        """A finished run's model card; None until the run wrote it (last)."""
        key = model_card_key(prefix)
        return ModelCard.model_validate(self.storage.read_json(key)) if self.storage.exists(key) else None

    def phase(self, progress: Progress | None, card: ModelCard | None) -> RunPhase:
        """Pending before progress.json, Succeeded once the model card exists, Searching between."""
        if card is not None:
            return RunPhase.SUCCEEDED
        if progress is None:
            return RunPhase.PENDING
        return RunPhase.SEARCHING if progress.phase in (RunPhase.SEARCHING.value, "Succeeded") else RunPhase.FAILED

    def live_trials(self, prefix: str) -> list[dict[str, Any]]:
        """The trials so far, read from a copy of the run's study journal (the search keeps writing the original)."""
        import optuna
        from optuna.storages.journal import JournalFileBackend

        from autovision.search.records import TrialRecord

        key = study_journal_key(prefix)
        if not self.storage.exists(key):
            return []
        with tempfile.TemporaryDirectory(prefix="autovision-console-") as work:
            path = Path(work) / posixpath.basename(key)
            data = self.storage.read_bytes(key)
            # A line being appended is cut off: keep whole lines only.
            path.write_bytes(data[: data.rfind(b"\n") + 1])
            journal = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
            studies = journal.get_all_studies()
            if not studies:
                return []
            trials = journal.get_all_trials(studies[0]._study_id, deepcopy=False)
            return [TrialRecord.of(trial).to_json() for trial in trials]

    def evaluation_data(self, prefix: str) -> tuple[ModelCard, dict[str, Any], bytes]:
        """A finished run's model card, evaluation.json and saved test predictions (.npz)."""
        card = self.card(prefix)
        if card is None:
            raise NotFoundError(f"run {prefix} has no finished model yet")
        model_dir = model_dir_key(prefix)
        evaluation: dict[str, Any] = self.storage.read_json(model_file_key(model_dir, EVALUATION_FILE))
        predictions = self.storage.read_bytes(model_file_key(model_dir, TEST_PREDICTIONS_FILE))
        return card, evaluation, predictions

    def sha256_of_uris(self, dataset: str, version: str, uris: list[str]) -> list[str | None]:
        """The hash of each test image URI (member URIs into the version's shards), via the index.

        Matched on the shard's number and the offset, so a storage root spelled differently since
        the run (another mount, another endpoint) still finds its images.
        """
        index = self.index(dataset, version)
        places = zip(index.shard.tolist(), index.offset.tolist(), strict=True)
        by_place = {place: row for row, place in enumerate(places)}
        found: list[str | None] = []
        for uri in uris:
            object_uri, offset, _ = split_member_uri(uri)
            number = SHARD_NUMBER.search(object_uri)
            row = None if number is None or offset is None else by_place.get((int(number.group(1)), offset))
            found.append(None if row is None else index.sha256[row])
        return found

    def evaluation_view(self, run: RunRef, dataset: DatasetRef, storage_name: str) -> EvaluationView:
        """The Evaluate page's data: evaluation.json, the test scores and truth, and each test image's hash."""
        from autovision.evaluate.predictions import SplitPredictions

        card, evaluation, data = self.evaluation_data(run_prefix(run.namespace, run.job, run.uid))
        predictions = SplitPredictions.from_npz(data)
        return EvaluationView(
            run=run,
            dataset=dataset,
            version=card.dataset.version,
            evaluation=evaluation,
            labels=predictions.labels,
            truth=[np.flatnonzero(row).tolist() for row in predictions.truth],
            scores=np.round(predictions.scores.astype(np.float64), SCORE_DIGITS).tolist(),
            images=self.sha256_of_uris(storage_name, card.dataset.version, predictions.uris),
            explained=self.sha256_of_uris(storage_name, card.dataset.version, explained_uris(evaluation)),
            multi_label=predictions.multi_label,
            metrics=card.metrics.to_json(),
            parity=card.parity,
        )

    def run_detail(self, summary: RunSummary) -> RunDetail:
        """One run's live view: its trials from the journal while it searches, the model card's once it is done."""
        prefix = run_prefix(summary.ref.namespace, summary.ref.job, summary.ref.uid)
        card = self.card(prefix)
        if card is None:
            return RunDetail(summary=summary, trials=self.live_trials(prefix))
        search = card.search
        return RunDetail(
            summary=summary,
            metric=search.get("metric"),
            trials=search.get("trials", []),
            pareto_front=search.get("paretoFront", []),
            chosen_trial=search.get("chosenTrial"),
            stop_reason=search.get("stopReason"),
            architecture=card.architecture,
            optimize_for=search.get("optimizeFor"),
        )


def explained_uris(evaluation: dict[str, Any]) -> list[str]:
    """The test images evaluation.json explains (its heatmaps' images), in its order; none in an older run."""
    explanations = evaluation.get("explanations") or {}
    return [str(image["uri"]) for image in explanations.get("images", [])]
