"""A zip of label folders (AutoML's "structured zip"), checked before any entry is read.

Hostile archives are refused whole: paths that climb out of the archive
(zip-slip), symbolic links, duplicate names, and zip bombs (too many entries, too
much declared data, or a compression ratio no image reaches). Each entry is then
read with a hard cap, so even a header that lies about its size cannot make an
entry expand further.
"""

from __future__ import annotations

import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from autovision.data.rules import DatasetImportError, ImportLimits, Rejection, RejectReason
from autovision.data.sources.base import Offer, Scanned, Source
from autovision.data.sources.layout import detect_layout, is_ignored, place
from autovision.data.validate import too_large
from autovision.settings import Settings
from autovision.storage import open_uri, storage_unavailable

_DRIVE = re.compile(r"^[A-Za-z]:")
# What a malformed entry raises while it is decompressed (bz2 reports bad data as OSError).
_ENTRY_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    OSError,
)


def unsafe_path(name: str) -> bool:
    """Whether an entry name is empty or could escape an extraction directory on any system."""
    return not name or name.startswith("/") or "\\" in name or bool(_DRIVE.match(name)) or ".." in name.split("/")


def is_symlink(info: zipfile.ZipInfo) -> bool:
    """Whether an entry is a Unix symbolic link (its mode is in the high 16 bits)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def check_archive(infos: Sequence[zipfile.ZipInfo], limits: ImportLimits) -> tuple[list[zipfile.ZipInfo], int]:
    """The archive's image candidates and how many junk files were ignored; refuses hostile archives."""
    if len(infos) > limits.max_entries:
        raise DatasetImportError(f"archive has {len(infos)} entries, over the {limits.max_entries} limit")
    names: set[str] = set()
    for info in infos:
        _check_entry(info, limits)
        if info.filename in names:
            raise DatasetImportError(f"archive lists {info.filename[:200]!r} twice")
        names.add(info.filename)
    files = [info for info in infos if not info.is_dir()]
    declared = sum(info.file_size for info in files)
    if declared > limits.max_total_bytes:
        raise DatasetImportError(f"archive expands to {declared} bytes, over the {limits.max_total_bytes} limit")
    candidates = [info for info in files if not is_ignored(info.filename)]
    if not candidates:
        raise DatasetImportError("archive holds no files")
    return candidates, len(files) - len(candidates)


def _check_entry(info: zipfile.ZipInfo, limits: ImportLimits) -> None:
    """Refuse the archive for one entry that could escape, link or explode."""
    if unsafe_path(info.filename):
        raise DatasetImportError(f"unsafe path in archive: {info.filename[:200]!r}")
    if is_symlink(info):
        raise DatasetImportError(f"symbolic link in archive: {info.filename[:200]!r}")
    ratio_limit = limits.max_compression_ratio * max(info.compress_size, 1)
    if info.file_size > limits.ratio_floor_bytes and info.file_size > ratio_limit:
        raise DatasetImportError(
            f"zip bomb suspected: {info.filename[:200]!r} expands over {limits.max_compression_ratio} times"
        )


def _open_archive(handle: Any, uri: str) -> zipfile.ZipFile:
    """Open a zip, turning every way a non-zip or broken central directory fails into one error."""
    try:
        return zipfile.ZipFile(handle)
    # zipfile parses attacker-controlled headers: any failure means "not a usable zip".
    except Exception as error:
        if storage_unavailable(error):  # the zip may be fine: storage holding it is down
            raise
        detail = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise DatasetImportError(f"{uri} is not a zip archive ({detail})") from None


class ZipSource(Source):
    """The entries of one zip, read through a seekable handle (local file or S3)."""

    def __init__(self, uri: str, settings: Settings, limits: ImportLimits) -> None:
        self.description = uri
        self.limits = limits
        self._handle = open_uri(uri, settings)
        try:
            self._archive = _open_archive(self._handle, uri)
            self._members, self.ignored = check_archive(self._archive.infolist(), limits)
        except BaseException:
            self._handle.close()
            raise
        self._by_name = {info.filename: info for info in self._members}
        self._layout = detect_layout([info.filename for info in self._members])
        self.total = len(self._members)

    def scan(self) -> Iterator[Scanned]:
        """Every candidate entry in archive order: its bytes, or why it is left out."""
        for info in self._members:
            self.position += 1
            placed = place(info.filename, self._layout)
            if isinstance(placed, Rejection):
                yield placed
                continue
            data = too_large(info.filename, info.file_size, self.limits) or self._read_entry(info)
            if isinstance(data, Rejection):
                yield data
                continue
            label, split = placed
            yield Offer(info.filename, (label,), split, data)

    def read(self, files: Sequence[str]) -> list[bytes]:
        """The named entries' bytes again, for writing."""
        contents = []
        for name in files:
            data = self._read_entry(self._by_name[name])
            if isinstance(data, Rejection):
                raise DatasetImportError(f"{self.description}: entry {name!r} could not be read again: {data.message}")
            contents.append(data)
        return contents

    def _read_entry(self, info: zipfile.ZipInfo) -> bytes | Rejection:
        """At most one byte more than the image limit, whatever the header declares."""
        try:
            with self._archive.open(info) as entry:
                return bytes(entry.read(self.limits.max_image_bytes + 1))
        except _ENTRY_ERRORS as error:
            message = f"cannot decompress entry ({type(error).__name__}: {str(error)[:120]})"
            return Rejection(info.filename, RejectReason.UNREADABLE, message)

    def close(self) -> None:
        """Close the archive and its underlying handle."""
        self._archive.close()
        self._handle.close()
