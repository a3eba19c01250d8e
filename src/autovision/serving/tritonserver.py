"""Run the real ``tritonserver`` shipped in the nvidia-pytriton wheel, for the local runtime.

pytriton's own ``Triton`` class serves Python callables; AutoVision instead serves a
model repository written by ``write_local_repository``, so it starts the binary
directly and reproduces the environment pytriton's launcher
(``pytriton/server/triton_server.py`` and ``pytriton/triton.py``) prepares:

* a backend directory holding the Python backend plus the backend stub built for the
  running interpreter (the wheel ships one stub per Python version);
* ``LD_LIBRARY_PATH`` with the wheel's bundled libraries (``nvidia_pytriton.libs`` in a
  wheel install, ``tritonserver/external_libs`` in a source checkout) and the
  interpreter's own ``libpython`` directory, so the stub embeds the same Python build;
* ``PATH`` starting with the interpreter's ``bin`` directory: the stub's embedded
  Python locates its prefix by searching ``PATH`` for ``python3``, which puts this
  virtualenv's site-packages (numpy, onnxruntime, Pillow) on its ``sys.path``;
* a unique shared-memory prefix and small shared-memory regions for the backend, so
  several servers can share a host and a 64 MiB container ``/dev/shm`` suffices.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import NoReturn, Self

import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

# The same sizes pytriton uses: the Python backend's 64 MiB default would not fit
# into a default container /dev/shm once a few model instances run.
SHM_DEFAULT_BYTE_SIZE = 4 * 1024 * 1024
SHM_GROWTH_BYTE_SIZE = 1024 * 1024
LOG_TAIL_LINES = 12
# glog's error prefix, e.g. "E1123 15:23:57.809592 5126 model_lifecycle.cc:642] ...".
_LOG_ERROR_LINE = re.compile(r"^E\d{4} ")
# Logged as an error on every machine without a GPU; it never explains a failure.
_HARMLESS_ON_CPU = "CudaDriverHelper has not been initialized"
_SHM_DIR = Path("/dev/shm")


class TritonServerError(RuntimeError):
    """tritonserver could not be prepared, did not become ready, or died."""


def pytriton_tritonserver_dir() -> Path:
    """The ``tritonserver`` tree inside the installed nvidia-pytriton package.

    Found without importing pytriton, whose import pulls in its whole client stack.
    """
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonServerError("nvidia-pytriton is not installed: pip install 'autovision[serve]'")
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def prepare_backend_directory(backend_dir: Path, triton_dir: Path) -> Path:
    """Make ``backend_dir/python`` hold the Python backend and this interpreter's stub.

    Symlinks, not copies: the binaries stay in the wheel and the directory is rebuilt on
    every start, so it always matches the installed pytriton.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = triton_dir / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        shipped = sorted(p.name for p in (triton_dir / "python_backend_stubs").glob("*"))
        raise TritonServerError(f"nvidia-pytriton has no Python {version} backend stub, only {shipped}")
    python_dir = backend_dir / "python"
    shutil.rmtree(python_dir, ignore_errors=True)
    python_dir.mkdir(parents=True)
    for source in [*(triton_dir / "backends" / "python").iterdir(), stub]:
        if source.is_file():
            (python_dir / source.name).symlink_to(source)
    return backend_dir


def server_environment(triton_dir: Path) -> dict[str, str]:
    """The environment tritonserver and its Python backend stubs need (see module doc)."""
    env = dict(os.environ)
    library_dirs = [
        triton_dir / "external_libs",
        triton_dir.parent.parent / "nvidia_pytriton.libs",
    ]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        library_dirs.append(Path(str(sysconfig.get_config_var("LIBDIR"))))
    existing = [env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*(str(d) for d in library_dirs if d.is_dir()), *existing])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


# A server listening on a wildcard address is reached on the loopback address of its family.
LOOPBACK_OF_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def endpoint(host: str, port: int) -> str:
    """``host:port`` as URLs and gRPC targets write it: an IPv6 address in brackets, a wildcard as loopback."""
    reachable = LOOPBACK_OF_WILDCARD.get(host, host)
    return f"[{reachable}]:{port}" if ":" in reachable else f"{reachable}:{port}"


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    All sockets stay bound until every port is chosen, so no port is handed out twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


class LocalTritonServer:
    """tritonserver serving one model repository, as a context manager.

    ``work_dir`` receives the backend directory and ``tritonserver.log``; without one a
    fresh directory under the system temporary directory is used and removed on ``stop()``.
    Every endpoint listens on ``host`` (loopback unless told otherwise); the HTTP and gRPC
    ports are free ones unless given (``autovision serve --http-port/--grpc-port``).
    """

    def __init__(
        self,
        model_repository: Path,
        work_dir: Path | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 15.0,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        grpc_port: int | None = None,
    ) -> None:
        self.model_repository = model_repository.resolve()
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._owns_work_dir = work_dir is None
        # Created by start(), not here, so an unstarted server leaves nothing behind.
        self.work_dir = work_dir or Path(tempfile.gettempdir()) / f"autovision-triton-{token}"
        self.log_path = self.work_dir / "tritonserver.log"
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._shm_prefix = f"autovision{token}-"
        self.host = host
        given = {"http": http_port, "grpc": grpc_port, "metrics": None}
        free = iter(free_ports(sum(port is None for port in given.values())))
        self._ports = {name: next(free) if port is None else port for name, port in given.items()}
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        """KServe v2 HTTP endpoint, as tritonclient.http expects it (no scheme)."""
        return endpoint(self.host, self._ports["http"])

    @property
    def grpc_url(self) -> str:
        """KServe v2 gRPC endpoint, as tritonclient.grpc expects it."""
        return endpoint(self.host, self._ports["grpc"])

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (its backend stubs are its children)."""
        return None if self._process is None else self._process.pid

    def shm_regions(self) -> list[Path]:
        """The Python backend's shared-memory files of this server, for measuring what it holds in /dev/shm."""
        return sorted(_SHM_DIR.glob(f"{self._shm_prefix}*"))

    @property
    def metrics_url(self) -> str:
        """Prometheus metrics endpoint."""
        return f"http://{endpoint(self.host, self._ports['metrics'])}/metrics"

    def command(self, triton_dir: Path, backend_dir: Path) -> list[str]:
        """The tritonserver command line: our address and ports, our backend directory."""
        ipv6 = ":" in self.host
        http_address = f"ipv6:{self.host}" if ipv6 else self.host  # libevhtp's form of an IPv6 address
        grpc_address = f"[{self.host}]" if ipv6 else self.host  # Triton appends ":port" to it
        return [
            str(triton_dir / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--http-address={http_address}",
            f"--http-port={self._ports['http']}",
            f"--grpc-address={grpc_address}",
            f"--grpc-port={self._ports['grpc']}",
            f"--metrics-address={http_address}",
            f"--metrics-port={self._ports['metrics']}",
            "--allow-gpu-metrics=false",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={SHM_DEFAULT_BYTE_SIZE}",
            f"--backend-config=python,shm-growth-byte-size={SHM_GROWTH_BYTE_SIZE}",
        ]

    def start(self) -> None:
        """Start tritonserver and block until it and all its models are ready."""
        if self._process is not None:
            raise TritonServerError("this server is already started")
        try:
            self._process = self._launch(pytriton_tritonserver_dir())
            self._wait_until_ready(self._process)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop gracefully (SIGTERM lets in-flight requests finish), then kill."""
        process, self._process = self._process, None
        try:
            if process is not None:
                _terminate(process, self.stop_timeout_s)
        finally:  # also after a second Ctrl-C
            for region in _SHM_DIR.glob(f"{self._shm_prefix}*"):
                region.unlink(missing_ok=True)
            if self._owns_work_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def wait(self) -> int:
        """Block until the server exits (the CLI's foreground mode); returns its exit code."""
        if self._process is None:
            raise TritonServerError("this server is not started")
        return self._process.wait()

    def log_summary(self) -> str:
        """The server log's error lines and last lines, for error messages."""
        with contextlib.suppress(OSError):
            return summarize_log(self.log_path.read_text(encoding="utf-8", errors="replace"))
        return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _launch(self, triton_dir: Path) -> subprocess.Popen[bytes]:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        backend_dir = prepare_backend_directory(self.work_dir / "backends", triton_dir)
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                self.command(triton_dir, backend_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(triton_dir),
                # Its own process group: Ctrl-C reaches only us (stop() then ends the
                # server gracefully), and a forced stop can take the stubs down with it.
                start_new_session=True,
            )

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        with httpclient.InferenceServerClient(self.http_url, connection_timeout=2.0) as client:
            while not _all_ready(client):
                if process.poll() is not None:
                    self._fail(f"tritonserver exited with code {process.returncode}")
                if time.monotonic() > deadline:
                    self._fail(f"tritonserver was not ready after {self.startup_timeout_s:.0f} s")
                time.sleep(0.2)

    def _fail(self, reason: str) -> NoReturn:
        # An owned work directory, log included, is removed by stop(): quote the log here.
        kept_log = "" if self._owns_work_dir else f", log {self.log_path}"
        raise TritonServerError(
            f"{reason} (repository {self.model_repository}{kept_log}); from the log:\n{self.log_summary()}"
        )


def summarize_log(text: str) -> str:
    """Error lines, then the last lines, of a tritonserver log without its status tables.

    The real cause (say, a model's Python traceback) is logged long before the tables
    Triton prints on exit, so a plain tail would hide it.
    """
    lines = [
        line
        for line in text.splitlines()
        if line.strip() and not line.startswith(("|", "+")) and _HARMLESS_ON_CPU not in line
    ]
    errors = [line for line in lines if _LOG_ERROR_LINE.match(line)]
    return "\n".join([*errors, *(line for line in lines[-LOG_TAIL_LINES:] if line not in errors)])


def _all_ready(client: httpclient.InferenceServerClient) -> bool:
    """Server ready and every model of the repository loaded (none failed or loading)."""
    try:
        if not client.is_server_ready():
            return False
        models = client.get_model_repository_index()
    except (InferenceServerException, OSError):  # refused or reset while it starts
        return False
    return all(model.get("state") == "READY" for model in models)


def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM; then SIGKILL whatever is left of its group (all of it if the server is not gone in time).

    The group holds the server and its backend stubs, all started by us: a
    second Ctrl-C must not orphan a server running in its own session, and a
    server stopped while it was still loading can leave stubs behind.
    """
    try:
        process.terminate()
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
