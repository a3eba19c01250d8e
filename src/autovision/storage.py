"""One small storage layer over ``file://`` and ``s3://`` URIs (fsspec + s3fs).

Every stage hands its results to the next through files here, never in memory, so
a process may die at any point and a retry continues. Writes are atomic, so a
reader never sees half of an object: S3 PUTs are atomic by protocol, and local
files are written to a temporary name and renamed. Multi-object artifacts additionally write a marker
(a manifest) last; readers trust a prefix only once that marker exists.

Failures come in two kinds, told apart here and nowhere else. A malformed URI or a
missing object is a ``StorageError``: no retry can fix it. Storage that is
unreachable, throttled or failing with 5xx is retried for
``Settings.storage_retry_seconds`` and then raised as ``StorageUnavailableError``,
which the trainer turns into a temporary failure, so that the Job retries the pod
and it resumes from checkpoints.
"""

from __future__ import annotations

import io
import json
import logging
import posixpath
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import botocore.exceptions
import botocore.parsers
import fsspec

from autovision.settings import Settings

TEMP_INFIX = ".tmp-"
# Parts of a multipart upload (S3's minimum is 5 MiB): what a streamed write holds at a time.
STREAM_BLOCK_BYTES: Final = 8 * 1024 * 1024
# A member URI names bytes inside an object: ``<object URI>#range=<offset>:<size>`` (an image in a shard).
RANGE_FRAGMENT = "#range="

# The retry policy of one storage operation: exponential backoff with jitter, first
# wait FIRST_WAIT_S, at most MAX_WAIT_S, until Settings.storage_retry_seconds have passed.
FIRST_WAIT_S: Final = 0.5
MAX_WAIT_S: Final = 20.0
# S3 error codes that say "later", as botocore's standard retry mode lists them (its
# checkers need a request's context, so they cannot classify a finished error).
RETRYABLE_S3_CODES: Final = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)
# Below the HTTP response: refused, reset, closed, timed out (botocore's own kinds and the builtins).
TRANSIENT_EXCEPTIONS: Final = (
    ConnectionError,
    TimeoutError,
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.parsers.ResponseParserError,  # throttling answers with broken XML: s3fs retries these too
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class StorageError(RuntimeError):
    """A storage URI is malformed or an object is missing: input that no retry can fix."""


class StorageUnavailableError(StorageError):
    """Storage stayed unreachable, throttled or failing (5xx) for the whole retry time: a retry later may succeed."""


def is_transient(error: BaseException) -> bool:
    """Whether an error from fsspec/s3fs says "try again later" (the retry loop's question).

    The error and its explicit causes (``raise ... from``) count: s3fs turns an S3
    error response into an ``OSError`` caused by botocore's ``ClientError``. A
    ``StorageError`` has been classified already and is never transient.
    """
    for link in _causes(error):
        if isinstance(link, StorageError):
            return False
        if isinstance(link, TRANSIENT_EXCEPTIONS):
            return True
        if isinstance(link, botocore.exceptions.ClientError):
            status = int(link.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return status >= 500 or status == 429 or link.response.get("Error", {}).get("Code") in RETRYABLE_S3_CODES
    return False


def storage_unavailable(error: BaseException) -> bool:
    """Whether unavailable storage is behind an error, however it was wrapped (the trainer's exit status)."""
    return any(isinstance(link, StorageUnavailableError) or is_transient(link) for link in _causes(error))


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__


def retrying(operation: Callable[[], T], what: str, settings: Settings) -> T:
    """Run a storage operation, retrying transient failures with backoff for ``settings.storage_retry_seconds``.

    One loop with a deadline, around whole operations: botocore counts attempts
    per request, not time, and an outage lasts seconds to minutes; every storage
    operation here is idempotent (whole-object writes, reads, listings, deletes),
    so repeating one is safe.
    """
    deadline = time.monotonic() + settings.storage_retry_seconds
    wait = FIRST_WAIT_S
    while True:
        try:
            return operation()
        except Exception as error:
            if not is_transient(error):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageUnavailableError(
                    f"cannot {what}: storage unavailable for {settings.storage_retry_seconds:g} s "
                    f"({type(error).__name__}: {error})"
                ) from error
            pause = min(random.uniform(wait / 2, wait), left)
            log.warning("cannot %s (%s: %s); retrying in %.1f s", what, type(error).__name__, error, pause)
            time.sleep(pause)
            wait = min(wait * 2, MAX_WAIT_S)


def split_uri(uri: str) -> tuple[str, str]:
    """Split a URI into (protocol, path); bare paths are local files."""
    if "://" not in uri:
        return "file", str(Path(uri).absolute())
    protocol, path = uri.split("://", 1)
    if protocol == "file":
        return "file", str(Path(path).absolute())
    if protocol == "s3":
        if not path.strip("/"):
            raise StorageError(f"{uri!r} names no bucket")
        return "s3", path.rstrip("/")
    raise StorageError(f"unsupported storage URI {uri!r}: use file://PATH or s3://BUCKET/PREFIX")


def filesystem(protocol: str, settings: Settings, timeout_s: float | None = None) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for a protocol, configured from settings.

    ``timeout_s`` bounds each S3 connection and read (botocore waits 60 s by default) and
    makes one attempt per request (botocore and s3fs would each retry with backoff of their
    own): for a writer that must give up soon rather than wait out a hung endpoint, its
    ``retrying`` loop alone bounding the whole operation.
    """
    if protocol == "s3":
        options = settings.s3_options()
        if timeout_s is not None:
            options["config_kwargs"] = {
                "connect_timeout": timeout_s,
                "read_timeout": timeout_s,
                "retries": {"mode": "standard", "max_attempts": 1},
            }
        # Other processes write the same prefixes: never trust a cached listing.
        fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, **options)
        if timeout_s is not None:
            fs.retries = 1  # an instance of its own (skip_instance_cache): no other caller sees this
        return fs
    return fsspec.filesystem("file", auto_mkdir=True)


def member_uri(object_uri: str, offset: int, size: int) -> str:
    """The URI of ``size`` bytes at ``offset`` inside an object (an image inside a shard)."""
    return f"{object_uri}{RANGE_FRAGMENT}{offset}:{size}"


def split_member_uri(uri: str) -> tuple[str, int, int] | tuple[str, None, None]:
    """A member URI's object URI, offset and size; a plain URI with no range."""
    if RANGE_FRAGMENT not in uri:
        return uri, None, None
    object_uri, _, extent = uri.rpartition(RANGE_FRAGMENT)
    offset, _, size = extent.partition(":")
    try:
        return object_uri, int(offset), int(size)
    except ValueError as error:
        raise StorageError(f"{uri!r} names no byte range (want {RANGE_FRAGMENT}OFFSET:SIZE)") from error


def open_uri(uri: str, settings: Settings | None = None) -> Any:
    """Open any readable URI (path, file://, s3://, or a member URI) as a seekable binary file."""
    if RANGE_FRAGMENT in uri:
        return io.BytesIO(read_uris([uri], settings)[0])
    protocol, path = split_uri(uri)
    settings = settings or Settings()
    fs = filesystem(protocol, settings)

    def opened() -> Any:
        if not fs.exists(path):
            raise StorageError(f"{uri} does not exist")
        return fs.open(path, "rb")

    return retrying(opened, f"open {uri}", settings)


def read_uris(uris: list[str], settings: Settings | None = None, chunk: int = 256) -> list[bytes]:
    """Read many objects or member URIs, concurrently where the backend can (s3fs batches requests)."""
    settings = settings or Settings()
    ranges = [split_member_uri(uri) for uri in uris]
    located = [(*split_uri(object_uri), offset, size) for object_uri, offset, size in ranges]
    filesystems = {protocol: filesystem(protocol, settings) for protocol in {p for p, *_ in located}}
    contents: list[bytes] = []
    for start in range(0, len(located), chunk):
        part = located[start : start + chunk]
        fetched: dict[tuple[str, str, int | None, int | None], bytes] = {}
        for protocol, fs in filesystems.items():
            mine = [key for key in part if key[0] == protocol]
            whole = [path for _, path, offset, _ in mine if offset is None]
            fetched.update(((protocol, path, None, None), data) for path, data in _cat(fs, whole, settings).items())
            members = [
                (path, offset, size) for _, path, offset, size in mine if offset is not None and size is not None
            ]
            for (path, offset, size), data in zip(members, _cat_ranges(fs, members, settings), strict=True):
                fetched[(protocol, path, offset, size)] = data
        contents.extend(fetched[key] for key in part)
    return contents


def _cat_ranges(fs: fsspec.AbstractFileSystem, members: list[tuple[str, int, int]], settings: Settings) -> list[bytes]:
    """Byte ranges of objects, concurrently on S3; a range past an object's end names the object."""
    if not members:
        return []
    paths = [path for path, _, _ in members]
    starts = [offset for _, offset, _ in members]
    ends = [offset + size for _, offset, size in members]

    def fetch() -> list[Any]:
        found: list[Any] = fs.cat_ranges(paths, starts, ends, on_error="return")
        raise_transient(found)
        return found

    found = retrying(fetch, f"read {len(paths)} range(s), first in: {paths[0]}", settings)
    for (path, offset, size), data in zip(members, found, strict=True):
        if not isinstance(data, bytes):
            raise StorageError(f"cannot read {path}: {data}")
        if len(data) != size:
            raise StorageError(f"{path} ends before byte {offset + size}: it is truncated")
    return [bytes(data) for data in found]


def object_sizes(uris: list[str], settings: Settings | None = None) -> list[int | None]:
    """Each object's size in bytes, None where unknown or unreadable: lets a reader refuse before reading.

    Asked concurrently where the backend can (s3fs); one missing object does not
    hide the others' sizes (it reads as None, and reading it reports the error).
    """
    settings = settings or Settings()
    located = [split_uri(uri) for uri in uris]
    sizes: list[int | None] = [None] * len(uris)
    for protocol in {p for p, _ in located}:
        fs = filesystem(protocol, settings)
        indexes = [i for i, (p, _) in enumerate(located) if p == protocol]
        paths = [located[i][1] for i in indexes]
        try:
            what = f"size {len(paths)} object(s), first: {paths[0]}"
            found = list(retrying(partial(fs.sizes, paths), what, settings))
        except StorageUnavailableError:
            raise
        except (StorageError, OSError):
            found = [_size_or_none(fs, path) for path in paths]
        for index, size in zip(indexes, found, strict=True):
            sizes[index] = int(size) if isinstance(size, int) else None
    return sizes


def _size_or_none(fs: fsspec.AbstractFileSystem, path: str) -> int | None:
    try:
        size = fs.size(path)
    except OSError:
        return None
    return int(size) if isinstance(size, int) else None


def _cat(fs: fsspec.AbstractFileSystem, paths: list[str], settings: Settings) -> dict[str, bytes]:
    if not paths:
        return {}

    def fetch() -> dict[str, Any]:
        found: dict[str, Any] = fs.cat(paths, on_error="return")
        raise_transient(found.values())
        return found

    found = retrying(fetch, f"read {len(paths)} object(s), first: {paths[0]}", settings)
    missing = [path for path in paths if not isinstance(found.get(path), bytes)]
    if missing:
        raise StorageError(f"cannot read {len(missing)} object(s), first: {missing[0]}")
    return {path: bytes(found[path]) for path in paths}


def raise_transient(results: Iterable[object]) -> None:
    """Raise the first transient error among results fsspec returned with ``on_error="return"``.

    Such a batch hands errors back as values; raising a transient one lets
    ``retrying`` repeat the batch instead of taking the outage for missing objects.
    """
    for result in results:
        if isinstance(result, Exception) and is_transient(result):
            raise result


class Storage:
    """Keys under one root URI, with atomic writes."""

    def __init__(self, root: str, settings: Settings | None = None, timeout_s: float | None = None) -> None:
        self.settings = settings or Settings()
        self.protocol, self.root_path = split_uri(root)
        self.fs = filesystem(self.protocol, self.settings, timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Storage:
        """The storage named by AUTOVISION_STORAGE_ROOT."""
        settings = settings or Settings()
        return cls(settings.storage_root, settings)

    def path(self, key: str) -> str:
        return posixpath.join(self.root_path, key.lstrip("/"))

    def uri(self, key: str) -> str:
        """The absolute URI of a key, as stored in manifests and status."""
        return f"{self.protocol}://{self.path(key)}"

    def exists(self, key: str) -> bool:
        return self._retrying(lambda: bool(self.fs.exists(self.path(key))), f"look for {self.uri(key)}")

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._retrying(lambda: bytes(self.fs.cat_file(self.path(key))), f"read {self.uri(key)}")
        except FileNotFoundError as error:
            raise StorageError(f"{self.uri(key)} does not exist") from error

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write an object atomically.

        On S3 a single PUT is already atomic: the object appears whole or not at all,
        so it goes straight to its key. On a file system the data goes to a
        temporary file first and is renamed onto the final name.
        """
        final = self.path(key)
        if self.protocol == "s3":
            self._retrying(lambda: self.fs.pipe_file(final, data), f"write {self.uri(key)}")
            return
        temporary = f"{final}{TEMP_INFIX}{uuid.uuid4().hex}"
        self.fs.pipe_file(temporary, data)
        try:
            self.fs.mv(temporary, final)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def write_stream(self, key: str, chunks: Callable[[], Iterable[bytes]]) -> None:
        """Write one large object from chunks, holding one chunk at a time; atomic like ``write_bytes``.

        On S3 the chunks go up as a multipart upload, and the object appears only when
        the upload completes; on a file system they go to a temporary file renamed at
        the end. ``chunks`` makes a fresh iterable, so a transient failure retries the
        whole object.
        """
        final = self.path(key)
        if self.protocol == "s3":

            def upload() -> None:
                handle = self.fs.open(final, "wb", block_size=STREAM_BLOCK_BYTES)
                try:
                    for chunk in chunks():
                        handle.write(chunk)
                except BaseException:
                    # Closing would complete the upload with what was written: abort it instead.
                    handle.discard()
                    handle.closed = True
                    raise
                handle.close()

            self._retrying(upload, f"write {self.uri(key)}")
            return
        temporary = f"{final}{TEMP_INFIX}{uuid.uuid4().hex}"
        try:
            with self.fs.open(temporary, "wb") as handle:
                for chunk in chunks():
                    handle.write(chunk)
            self.fs.mv(temporary, final)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def write_many(self, objects: dict[str, bytes]) -> None:
        """Write many independent objects, concurrently on S3; each one atomic."""
        if self.protocol == "s3":
            paths = {self.path(key): data for key, data in objects.items()}
            self._retrying(lambda: self.fs.pipe(paths), f"write {len(paths)} object(s) under {self.uri('')}")
            return
        for key, data in objects.items():
            self.write_bytes(key, data)

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, value: Any) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True).encode())

    def list_keys(self, prefix: str) -> list[str]:
        """Keys under a prefix, recursively, sorted, without in-flight temporaries."""
        base = self.path(prefix)

        def listing() -> dict[str, Any]:
            return self.fs.find(base, detail=True) if self.fs.exists(base) else {}

        found = self._retrying(listing, f"list {self.uri(prefix)}")
        root = self.root_path.rstrip("/") + "/"
        return sorted(
            str(path).removeprefix(root)
            for path, info in found.items()
            if info.get("type") == "file" and TEMP_INFIX not in posixpath.basename(str(path))
        )

    def upload_dir(self, local_dir: Path, prefix: str) -> list[str]:
        """Copy a local directory tree under a prefix, object by object, atomically."""
        keys = []
        for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            key = posixpath.join(prefix, file.relative_to(local_dir).as_posix())
            self.write_bytes(key, file.read_bytes())
            keys.append(key)
        return keys

    def download_prefix(self, prefix: str, local_dir: Path) -> list[Path]:
        """Copy every object under a prefix into a local directory."""
        written = []
        for key in self.list_keys(prefix):
            target = local_dir / posixpath.relpath(key, prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.read_bytes(key))
            written.append(target)
        return written

    def copy(self, source_key: str, target_key: str) -> None:
        """Copy one object to another key inside this storage (a server-side copy on S3), atomically on a
        file system (a temporary file renamed)."""
        source, final = self.path(source_key), self.path(target_key)
        if self.protocol == "s3":
            self._retrying(lambda: self.fs.copy(source, final), f"copy {self.uri(source_key)}")
            return
        temporary = f"{final}{TEMP_INFIX}{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            self.fs.copy(source, temporary)
            self.fs.mv(temporary, final)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def delete_prefix(self, prefix: str) -> None:
        def delete() -> None:
            if self.fs.exists(self.path(prefix)):
                self.fs.rm(self.path(prefix), recursive=True)

        self._retrying(delete, f"delete {self.uri(prefix)}")

    def _retrying(self, operation: Callable[[], T], what: str) -> T:
        return retrying(operation, what, self.settings)
