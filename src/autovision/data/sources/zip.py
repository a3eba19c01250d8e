"""A zip of label folders (AutoML's "structured zip"), checked before any entry is read.

Hostile archives are refused whole: paths that climb out of the archive
(zip-slip), symbolic links, duplicate names, and zip bombs (too many entries, too
much declared data, or a compression ratio no image reaches). Each entry is then
read with a hard cap, so even a header that lies about its size cannot make an
entry expand further.
"""

from __future__ import annotations

import array
import hashlib
import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

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


class CentralDirectory:
    """A zip's entries as compact arrays (about 100 bytes per entry where a ``ZipInfo`` costs over 600).

    ``zipfile`` parses the central directory itself (all its checks stay); this
    object stands in for ``ZipFile.filelist`` and keeps, from each ``ZipInfo`` it
    is handed, only what reading the entry again needs. ``info`` rebuilds one
    entry's ``ZipInfo`` on demand.
    """

    def __init__(self) -> None:
        self._names = bytearray()
        self._name_ends = array.array("q")
        self._numbers = {field: array.array("q") for field in _KEPT_FIELDS}

    def append(self, info: zipfile.ZipInfo) -> None:
        """Keep one entry (called by ``zipfile`` while it reads the central directory)."""
        self._names += info.orig_filename.encode("utf-8", "surrogatepass")
        self._name_ends.append(len(self._names))
        for field, values in self._numbers.items():
            values.append(getattr(info, field))

    def __len__(self) -> int:
        return len(self._name_ends)

    def name(self, index: int) -> str:
        """Entry ``index``'s name as the archive spells it."""
        start = self._name_ends[index - 1] if index else 0
        return self._names[start : self._name_ends[index]].decode("utf-8", "surrogatepass")

    def names(self, indices: Iterable[int] | None = None) -> Iterator[str]:
        """The file names (``ZipInfo.filename``: cut at a NUL) of these entries (all by default), one at a time."""
        for index in range(len(self)) if indices is None else indices:
            yield self.name(index).split("\0", 1)[0]

    def info(self, index: int) -> zipfile.ZipInfo:
        """Entry ``index`` as ``zipfile`` described it, for ``ZipFile.open``."""
        info = zipfile.ZipInfo(self.name(index))
        for field, values in self._numbers.items():
            setattr(info, field, values[index])
        return info

    def number(self, field: str, index: int) -> int:
        """One of the kept numeric fields of entry ``index`` (``file_size``, ``compress_size``, ...)."""
        return self._numbers[field][index]


# What reading an entry again needs from its ZipInfo, besides its name.
_KEPT_FIELDS = ("header_offset", "compress_size", "file_size", "compress_type", "flag_bits", "CRC", "external_attr")


class _Discarded(dict[str, zipfile.ZipInfo]):
    """Stands in for ``ZipFile.NameToInfo``: entries are found through ``ZipSource``'s own lookup."""

    def __setitem__(self, name: str, info: zipfile.ZipInfo) -> None:
        pass


class _CompactZipFile(zipfile.ZipFile):
    """A ``ZipFile`` whose central directory goes into a ``CentralDirectory`` rather than a ZipInfo per entry."""

    def _RealGetContents(self) -> None:  # noqa: N802 (zipfile's name)
        self.filelist = CentralDirectory()  # type: ignore[assignment]
        self.NameToInfo = _Discarded()
        super()._RealGetContents()  # type: ignore[misc]

    @property
    def directory(self) -> CentralDirectory:
        """The archive's entries."""
        return self.filelist  # type: ignore[return-value]


def name_hashes(names: Iterable[str], count: int) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each name: to find repeated names and look names up without a set of all of them."""
    hashes = np.empty(count, dtype=np.uint64)
    for index, name in enumerate(names):
        hashes[index] = int.from_bytes(hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest())
    return hashes


def check_archive(directory: CentralDirectory, limits: ImportLimits) -> tuple[npt.NDArray[np.int64], int]:
    """The archive's image candidates (entry indices) and how many junk files were ignored; refuses hostile
    archives."""
    if len(directory) > limits.max_entries:
        raise DatasetImportError(f"archive has {len(directory)} entries, over the {limits.max_entries} limit")
    files = array.array("q")
    candidates = array.array("q")
    declared = 0
    for index in range(len(directory)):
        info = directory.info(index)
        _check_entry(info, limits)
        if not info.is_dir():
            files.append(index)
            declared += info.file_size
            if not is_ignored(info.filename):
                candidates.append(index)
    _check_unique(directory)
    if declared > limits.max_total_bytes:
        raise DatasetImportError(f"archive expands to {declared} bytes, over the {limits.max_total_bytes} limit")
    if not candidates:
        raise DatasetImportError("archive holds no files")
    return np.array(candidates, dtype=np.int64), len(files) - len(candidates)


def _check_unique(directory: CentralDirectory) -> None:
    """Refuse an archive that lists a name twice (found by hash, confirmed by name)."""
    hashes = name_hashes(directory.names(), len(directory))
    order = np.argsort(hashes, kind="stable")
    same = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
    for position in same.tolist():
        first, second = directory.names([int(order[position]), int(order[position + 1])])
        if first == second:
            raise DatasetImportError(f"archive lists {first[:200]!r} twice")


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


def _open_archive(handle: Any, uri: str) -> _CompactZipFile:
    """Open a zip, turning every way a non-zip or broken central directory fails into one error."""
    try:
        return _CompactZipFile(handle)
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
            self._directory = self._archive.directory
            self._members, self.ignored = check_archive(self._directory, limits)
        except BaseException:
            self._handle.close()
            raise
        # Names looked up by hash when read again: sorted hashes of the candidates, and their entry indices.
        hashes = name_hashes(self._directory.names(map(int, self._members)), len(self._members))
        order = np.argsort(hashes, kind="stable")
        self._sorted_hashes, self._by_hash = hashes[order], self._members[order]
        self._layout = detect_layout(self._directory.names(map(int, self._members)))
        self.total = len(self._members)

    def scan(self) -> Iterator[Scanned]:
        """Every candidate entry in archive order: its bytes, or why it is left out."""
        for index in map(int, self._members):  # one int at a time: a list of them costs 36 bytes per entry
            info = self._directory.info(index)
            self.position += 1
            if not self.in_part(info.filename):
                continue
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
            data = self._read_entry(self._find(name))
            if isinstance(data, Rejection):
                raise DatasetImportError(f"{self.description}: entry {name!r} could not be read again: {data.message}")
            contents.append(data)
        return contents

    def _find(self, name: str) -> zipfile.ZipInfo:
        """The candidate entry called ``name``."""
        target = name_hashes([name], 1)[0]
        position = int(np.searchsorted(self._sorted_hashes, target))
        while position < len(self._sorted_hashes) and self._sorted_hashes[position] == target:
            info = self._directory.info(int(self._by_hash[position]))
            if info.filename == name:
                return info
            position += 1
        raise DatasetImportError(f"{self.description}: entry {name!r} is gone")

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
