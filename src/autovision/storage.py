"""One small storage layer over ``file://`` and ``s3://`` URIs (fsspec + s3fs).

Every stage hands its results to the next through files here, never in memory, so
a process may die at any point and a retry continues. Writes are atomic, so a
reader never sees half of an object: S3 PUTs are atomic by protocol, and local
files are written to a temporary name and renamed. Multi-object artifacts additionally write a marker
(a manifest) last; readers trust a prefix only once that marker exists.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from pathlib import Path
from typing import Any

import fsspec

from autovision.settings import Settings

TEMP_INFIX = ".tmp-"


class StorageError(RuntimeError):
    """A storage URI is malformed, unreachable, or an object is missing."""


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


def filesystem(protocol: str, settings: Settings) -> fsspec.AbstractFileSystem:
    """The fsspec filesystem for a protocol, configured from settings."""
    if protocol == "s3":
        # Other processes write the same prefixes: never trust a cached listing.
        return fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False, **settings.s3_options())
    return fsspec.filesystem("file", auto_mkdir=True)


def open_uri(uri: str, settings: Settings | None = None) -> Any:
    """Open any readable URI (path, file://, s3://) as a seekable binary file."""
    protocol, path = split_uri(uri)
    fs = filesystem(protocol, settings or Settings())
    if not fs.exists(path):
        raise StorageError(f"{uri} does not exist")
    return fs.open(path, "rb")


def read_uris(uris: list[str], settings: Settings | None = None, chunk: int = 256) -> list[bytes]:
    """Read many objects, concurrently where the backend can (s3fs batches requests)."""
    settings = settings or Settings()
    located = [split_uri(uri) for uri in uris]
    filesystems = {protocol: filesystem(protocol, settings) for protocol in {p for p, _ in located}}
    contents: list[bytes] = []
    for start in range(0, len(located), chunk):
        part = located[start : start + chunk]
        fetched = {
            (protocol, path): data
            for protocol, fs in filesystems.items()
            for path, data in _cat(fs, [path for p, path in part if p == protocol]).items()
        }
        contents.extend(fetched[key] for key in part)
    return contents


def _cat(fs: fsspec.AbstractFileSystem, paths: list[str]) -> dict[str, bytes]:
    if not paths:
        return {}
    found = fs.cat(paths, on_error="return")
    missing = [path for path in paths if not isinstance(found.get(path), bytes)]
    if missing:
        raise StorageError(f"cannot read {len(missing)} object(s), first: {missing[0]}")
    return {path: bytes(found[path]) for path in paths}


class Storage:
    """Keys under one root URI, with atomic writes."""

    def __init__(self, root: str, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.protocol, self.root_path = split_uri(root)
        self.fs = filesystem(self.protocol, self.settings)

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
        return bool(self.fs.exists(self.path(key)))

    def read_bytes(self, key: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(key)))
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
            self.fs.pipe_file(final, data)
            return
        temporary = f"{final}{TEMP_INFIX}{uuid.uuid4().hex}"
        self.fs.pipe_file(temporary, data)
        try:
            self.fs.mv(temporary, final)
        finally:
            if self.fs.exists(temporary):
                self.fs.rm(temporary)

    def write_many(self, objects: dict[str, bytes]) -> None:
        """Write many independent objects, concurrently on S3; each one atomic."""
        if self.protocol == "s3":
            self.fs.pipe({self.path(key): data for key, data in objects.items()})
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
        if not self.fs.exists(base):
            return []
        found = self.fs.find(base, detail=True)
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

    def delete_prefix(self, prefix: str) -> None:
        if self.exists(prefix):
            self.fs.rm(self.path(prefix), recursive=True)
