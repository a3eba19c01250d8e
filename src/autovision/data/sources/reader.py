"""Read many images by URI with a hard cap on each: file://, s3:// and http(s)://.

The cap is enforced on the bytes actually read, never on a declared size, so a
lying server or a huge object cannot exhaust memory. s3 and local files are read
with ranged requests (concurrent on s3); http(s) with a streamed, bounded read.
"""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec

from autovision.data.manifest import SplitName
from autovision.data.rules import DatasetImportError, Rejection, RejectReason
from autovision.data.sources.base import Offer, Scanned
from autovision.settings import Settings
from autovision.storage import StorageError, filesystem, raise_transient, retrying, split_uri

HTTP_TIMEOUT_S = 30
HTTP_WORKERS = 8
# Images fetched at once: bounds memory to READ_CHUNK x the per-image limit.
READ_CHUNK = 32


@dataclass(frozen=True, slots=True)
class Pending:
    """A file a source has placed (labels, split) but not read yet."""

    file: str
    uri: str
    labels: tuple[str, ...]
    split: SplitName | None
    line: int | None = None


class CappedReader:
    """Reads URIs at most ``cap + 1`` bytes each (so over-cap files are recognisable),
    keeping one filesystem (and its connections) per protocol for the whole import."""

    def __init__(self, cap: int, settings: Settings) -> None:
        self.cap = cap
        self.settings = settings
        self._filesystems: dict[str, fsspec.AbstractFileSystem] = {}

    def read(self, uris: Sequence[str]) -> list[bytes | Rejection]:
        """Each URI's bytes, or why they could not be read."""
        results: list[bytes | Rejection] = [b""] * len(uris)
        by_protocol: dict[str, list[int]] = defaultdict(list)
        for index, uri in enumerate(uris):
            by_protocol[uri.split("://", 1)[0] if "://" in uri else "file"].append(index)
        for protocol, indices in by_protocol.items():
            chosen = [uris[i] for i in indices]
            fetched = self._read_http(chosen) if protocol in ("http", "https") else self._read_fs(protocol, chosen)
            for index, data in zip(indices, fetched, strict=True):
                results[index] = data
        return results

    def offers(self, pending: Iterable[Pending | Rejection]) -> Iterator[Scanned]:
        """Read placed files ``READ_CHUNK`` at a time, passing rejections through in order."""
        items = iter(pending)
        while chunk := list(itertools.islice(items, READ_CHUNK)):
            fetched = iter(self.read([item.uri for item in chunk if isinstance(item, Pending)]))
            for item in chunk:
                if isinstance(item, Rejection):
                    yield item
                    continue
                data = next(fetched)
                if isinstance(data, Rejection):
                    yield Rejection(item.file, data.reason, data.message, item.line)
                else:
                    yield Offer(item.file, item.labels, item.split, data, item.line)

    def read_again(self, uris: Sequence[str]) -> list[bytes]:
        """Files a scan accepted, read again for writing; refuses the import if one is gone."""
        contents = []
        for data in self.read(uris):
            if isinstance(data, Rejection):
                raise DatasetImportError(f"{data.file} changed during the import: {data.message}")
            contents.append(data)
        return contents

    def _read_fs(self, protocol: str, uris: list[str]) -> list[bytes | Rejection]:
        try:
            paths = [split_uri(uri)[1] for uri in uris]
        except StorageError as error:
            return [Rejection(uri, RejectReason.UNSUPPORTED_URI, str(error)) for uri in uris]
        if protocol not in self._filesystems:
            self._filesystems[protocol] = filesystem(protocol, self.settings)
        fs = self._filesystems[protocol]

        def fetch() -> list[object]:
            # An outage is retried, never taken for unreadable images (each would be rejected).
            fetched: list[object] = fs.cat_ranges(paths, 0, self.cap + 1, on_error="return")
            raise_transient(fetched)
            return fetched

        fetched = retrying(fetch, f"read {len(uris)} image(s), first: {uris[0]}", self.settings)
        return [_outcome(uri, data) for uri, data in zip(uris, fetched, strict=True)]

    def _read_http(self, uris: list[str]) -> list[bytes | Rejection]:
        with ThreadPoolExecutor(HTTP_WORKERS) as pool:
            return list(pool.map(self._fetch_http, uris))

    def _fetch_http(self, uri: str) -> bytes | Rejection:
        try:
            with urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT_S) as response:
                return bytes(response.read(self.cap + 1))
        except urllib.error.HTTPError as error:
            reason = RejectReason.MISSING_FILE if error.code in (404, 410) else RejectReason.UNREADABLE
            return Rejection(uri, reason, f"HTTP {error.code}")
        except (urllib.error.URLError, OSError, ValueError) as error:
            return Rejection(uri, RejectReason.UNREADABLE, f"cannot fetch: {str(error)[:120]}")


def _outcome(uri: str, data: object) -> bytes | Rejection:
    if isinstance(data, bytes):
        return data
    if isinstance(data, FileNotFoundError):
        return Rejection(uri, RejectReason.MISSING_FILE, "no such file")
    return Rejection(uri, RejectReason.UNREADABLE, f"cannot read: {type(data).__name__}: {str(data)[:120]}")
