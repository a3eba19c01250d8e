"""An AutoML Vision CSV index: ``[SET,]URI[,LABEL...]``, streamed row by row.

SET is TRAIN, VALIDATION, TEST or UNASSIGNED (split automatically); a row without
a label is an unlabelled image. URIs are s3://, file://, http(s):// or paths
relative to the CSV, as far as the installation allows those schemes
(``Settings.import_uri_schemes``). The file is read line by line with a cap on each line and
the images a small chunk at a time (see ``reader``), so a million-row index needs the memory of
one chunk of images plus one small digest per row (to spot duplicate rows).
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from autovision.data.manifest import SplitName
from autovision.data.rules import ImportLimits, Rejection, RejectReason, label_problem
from autovision.data.sources.base import Scanned, Source
from autovision.data.sources.reader import CappedReader, Pending
from autovision.settings import IMPORT_URI_SCHEMES, Settings, uri_prefixes
from autovision.storage import filesystem, open_uri, split_uri

SET_VALUES: dict[str, SplitName | None] = {
    "TRAIN": "train",
    "VALIDATION": "validation",
    "TEST": "test",
    "UNASSIGNED": None,
}
_BUFFER_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One parsed index row: an image URI, its labels (maybe none) and its fixed split."""

    uri: str
    labels: tuple[str, ...]
    split: SplitName | None
    line: int

    def key(self) -> bytes:
        """A small digest identifying the row's content, to recognise repeated rows."""
        text = "\x1f".join([self.split or "", self.uri, *self.labels])
        return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _looks_like_uri(field: str) -> bool:
    """A SET value is a bare word; an image URI or path has a scheme, a slash or an extension."""
    return "://" in field or "/" in field or "." in field


def resolve_uri(text: str, base: str, schemes: Sequence[str] = IMPORT_URI_SCHEMES) -> str | None:
    """An absolute URI for a row's URI field (relative paths are relative to ``base``), or
    None when its scheme is not one of ``schemes`` (those this installation imports from)."""
    if "://" in text:
        uri = text
    else:
        protocol, directory = base.split("://", 1)
        uri = f"{protocol}://{posixpath.normpath(posixpath.join(directory, text))}"
    return uri if uri.split("://", 1)[0].lower() in schemes else None


def parse_row(
    raw: bytes, line: int, base: str, multi_label: bool, schemes: Sequence[str] = IMPORT_URI_SCHEMES
) -> CsvRow | Rejection | None:
    """Parse one raw CSV line (None for a blank line), relative URIs against ``base``."""
    where = f"line {line}"
    try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as error:
        return Rejection(where, RejectReason.BAD_ENCODING, f"not UTF-8 ({error.reason} at byte {error.start})", line)
    if "\x00" in text:
        return Rejection(where, RejectReason.BAD_ENCODING, "contains NUL characters (UTF-16?); save as UTF-8", line)
    try:
        fields = [field.strip() for field in next(csv.reader([text.rstrip("\r\n")]), [])]
    except csv.Error as error:
        return Rejection(where, RejectReason.WRONG_COLUMN_COUNT, f"malformed CSV row ({error})", line)
    while fields and not fields[-1]:
        fields.pop()
    if not fields:
        return None
    return _row_from_fields(fields, line, base, multi_label, schemes)


def _row_from_fields(
    fields: list[str], line: int, base: str, multi_label: bool, schemes: Sequence[str]
) -> CsvRow | Rejection:
    """Interpret non-empty fields as ``[SET,]URI[,LABEL...]``."""
    where = f"line {line}"
    split: SplitName | None = None
    if not _looks_like_uri(fields[0]):
        if fields[0].upper() not in SET_VALUES:
            allowed = ", ".join(SET_VALUES)
            return Rejection(where, RejectReason.UNKNOWN_SET, f"SET {fields[0][:40]!r} is not one of {allowed}", line)
        split, fields = SET_VALUES[fields[0].upper()], fields[1:]
    if not fields or not fields[0]:
        return Rejection(where, RejectReason.WRONG_COLUMN_COUNT, "expected [SET,]URI[,LABEL...]: no image URI", line)
    labels = tuple(sorted({label for label in fields[1:] if label}))
    if len(labels) > 1 and not multi_label:
        message = f"{len(labels)} labels on one row of a single-label dataset (import it as multi-label)"
        return Rejection(where, RejectReason.WRONG_COLUMN_COUNT, message, line)
    problems = [problem for problem in map(label_problem, labels) if problem]
    if problems:
        return Rejection(where, RejectReason.INVALID_LABEL, problems[0], line)
    uri = resolve_uri(fields[0], base, schemes)
    if uri is None:
        message = f"cannot read {fields[0][:80]!r}: use {uri_prefixes(schemes)} or a path relative to the CSV"
        return Rejection(where, RejectReason.UNSUPPORTED_URI, message, line)
    return CsvRow(uri=uri, labels=labels, split=split, line=line)


def bounded_lines(handle: Any, max_bytes: int) -> Iterator[bytes | None]:
    """Lines of a binary file, each None when longer than ``max_bytes`` (the rest is skipped)."""
    while line := handle.readline(max_bytes + 1):
        if len(line) <= max_bytes or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):
            line = handle.readline(max_bytes + 1)
        yield None


class CsvSource(Source):
    """The images an index names, fetched a chunk at a time."""

    def __init__(self, uri: str, settings: Settings, limits: ImportLimits, multi_label: bool) -> None:
        protocol, path = split_uri(uri)
        self.description = uri
        self.limits = limits
        self._reader = CappedReader(limits.max_image_bytes, settings)
        self.multi_label = multi_label
        self._schemes = settings.import_uri_schemes
        self._raw = open_uri(uri, settings)
        self.total = int(filesystem(protocol, settings).size(path))
        self._base = f"{protocol}://{posixpath.dirname(path)}"
        self._lines = io.BufferedReader(self._raw, buffer_size=_BUFFER_BYTES)

    def _rows(self) -> Iterator[CsvRow | Rejection]:
        """Parsed, non-blank, non-repeated rows in file order."""
        seen: set[bytes] = set()
        for line, raw in enumerate(bounded_lines(self._lines, self.limits.max_csv_line_bytes), start=1):
            self.position = self._lines.tell()
            if raw is None:
                if not self.in_part(f"line {line}"):
                    continue
                message = f"longer than {self.limits.max_csv_line_bytes} bytes"
                yield Rejection(f"line {line}", RejectReason.LINE_TOO_LONG, message, line)
                continue
            row = parse_row(raw, line, self._base, self.multi_label, self._schemes)
            if not self.in_part(row.uri if isinstance(row, CsvRow) else f"line {line}"):
                continue
            if isinstance(row, CsvRow):
                if row.key() in seen:
                    yield Rejection(row.uri, RejectReason.DUPLICATE_ROW, "repeats an earlier row", line)
                    continue
                seen.add(row.key())
            if row is not None:
                yield row

    def scan(self) -> Iterator[Scanned]:
        """Every row's image (or why not), in file order."""
        pending = (
            Pending(row.uri, row.uri, row.labels, row.split, row.line) if isinstance(row, CsvRow) else row
            for row in self._rows()
        )
        return self._reader.offers(pending)

    def read(self, files: Sequence[str]) -> list[bytes]:
        """The images at these URIs again, for writing."""
        return self._reader.read_again(files)

    def close(self) -> None:
        """Close the index file."""
        self._lines.close()
