"""The console's web application: a JSON API over a ``ConsoleSource`` and the page that uses it.

Security rules hold for every route, in middlewares rather than per handler:

* every response carries a strict Content-Security-Policy (scripts, styles,
  images and requests from this origin only; no inline script), ``nosniff``
  and ``frame-ancestors 'none'``;
* every state-changing request (not GET or HEAD) must come from this origin
  (its ``Origin`` header, else its ``Referer``) and carry the CSRF token of the
  double-submit cookie in ``X-CSRF-Token``;
* an upload larger than ``ConsoleConfig.max_upload_bytes`` is cut off with 413
  and nothing of it is kept;
* images are served only by ``(dataset, version, sha256)``; static files only
  from the package's own list of assets;
* with a ``ConsoleGuard`` (in a cluster), each API call is checked before the
  source is asked anything.
"""

from __future__ import annotations

import hmac
import json
import secrets
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from autovision.console import guard as verbs
from autovision.console.guard import ConsoleGuard
from autovision.console.source import (
    ConsoleSource,
    DatasetRef,
    DeploymentRef,
    ImageQuery,
    ImportRequest,
    NotFoundError,
    RunRef,
    SourceError,
    TrainingRequest,
    checked_sha256,
    checked_token,
)
from autovision.resources import OptimizeFor, Task
from autovision.settings import Settings
from autovision.storage import StorageError

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSRF_COOKIE: Final = "autovision_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# An uploaded dataset zip: the default limit (`autovision console --max-upload-mb` changes it).
DEFAULT_MAX_UPLOAD_BYTES: Final = 1024 * 1024 * 1024
UPLOAD_CHUNK: Final = 1024 * 1024
DEFAULT_TOP_K: Final = 5
MAX_TOP_K: Final = 50
ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")
# Content types by magic bytes: an image is sent with its own type or as opaque bytes, never sniffed.
IMAGE_TYPES: Final = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
)
STATIC_PACKAGE: Final = "autovision.console"
STATIC_TYPES: Final = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


@dataclass(frozen=True)
class ConsoleConfig:
    """The console's limits, and where uploads wait for the importer."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_image_bytes: int = field(default_factory=lambda: Settings().max_image_bytes)
    upload_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "autovision-console-uploads")


SOURCE: Final = web.AppKey("source", ConsoleSource)
GUARD: Final = web.AppKey("guard", ConsoleGuard)
CONFIG: Final = web.AppKey("config", ConsoleConfig)
ASSETS: Final = web.AppKey("assets", dict[str, bytes])


class FormError(ValueError):
    """A malformed request: answered 400 with its message."""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static_assets() -> dict[str, bytes]:
    """Every file of the page (``static/``, package data), by its path under ``/static/``: nothing else is served."""
    assets: dict[str, bytes] = {}

    def walk(folder: Any, prefix: str) -> None:
        for entry in folder.iterdir():
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            elif Path(entry.name).suffix in STATIC_TYPES:
                assets[f"{prefix}{entry.name}"] = entry.read_bytes()

    walk(resources.files(STATIC_PACKAGE) / "static", "")
    return assets


def error_response(status: int, message: str) -> web.Response:
    """The API's one error shape, shown as it is in the page."""
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn the source's and the models' refusals into one readable JSON error."""
    try:
        return await handler(request)
    except NotFoundError as error:
        return error_response(404, str(error))
    except (SourceError, ValueError) as error:  # ValidationError is a ValueError
        message = _validation_message(error) if isinstance(error, ValidationError) else str(error)
        return error_response(400 if not isinstance(error, SourceError) else 409, message)
    except StorageError as error:
        return error_response(502, str(error))
    except web.HTTPException as error:
        if error.status < 400 or not request.path.startswith("/api/"):
            raise
        return error_response(error.status, error.text or error.reason)


def _validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a state-changing request from another origin, or without the double-submit token."""
    if request.method not in SAFE_METHODS:
        origin = request.headers.get("Origin") or request.headers.get("Referer")
        if not origin or urlsplit(origin).netloc != request.host:
            return error_response(403, "cross-origin request refused")
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = request.headers.get(CSRF_HEADER, "")
        if not cookie or not hmac.compare_digest(cookie, sent):
            return error_response(403, "missing or wrong CSRF token: reload the page")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response, errors included, carries the CSP and its companions."""
    response.headers.update(SECURITY_HEADERS)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


async def checked(request: web.Request, verb: str, resource: str) -> None:
    """Ask the guard, when there is one, before the source is asked anything."""
    guard = request.app.get(GUARD)
    if guard is not None:
        await guard.check(request, verb, resource)


# --- the page -----------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """The single page; it sets the CSRF cookie the page's script sends back as a header."""
    response = web.Response(body=request.app[ASSETS]["index.html"], content_type="text/html")
    if not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(32), path="/", samesite="Strict", secure=request.secure, httponly=False
        )
    return response


async def static(request: web.Request) -> web.Response:
    """One of the page's own assets, by its exact name."""
    name = request.match_info["name"]
    body = request.app[ASSETS].get(name)
    if body is None:
        raise web.HTTPNotFound()
    response = web.Response(body=body, content_type=STATIC_TYPES[Path(name).suffix])
    response.headers["Cache-Control"] = "no-cache"
    return response


# --- datasets -------------------------------------------------------------------


def dataset_of(request: web.Request) -> DatasetRef:
    """The dataset named by the route."""
    return DatasetRef(namespace=request.match_info["namespace"], name=request.match_info["name"])


def version_of(request: web.Request) -> str:
    """The dataset version named by the route."""
    return checked_token(request.match_info["version"], "dataset version")


async def list_datasets(request: web.Request) -> web.Response:
    await checked(request, verbs.LIST, verbs.DATASETS)
    datasets = await request.app[SOURCE].list_datasets()
    return web.json_response([dataset.to_json() for dataset in datasets])


async def dataset_report(request: web.Request) -> web.Response:
    await checked(request, verbs.GET, verbs.DATASETS)
    return web.json_response(await request.app[SOURCE].dataset_report(dataset_of(request), version_of(request)))


async def dataset_images(request: web.Request) -> web.Response:
    await checked(request, verbs.GET, verbs.DATASETS)
    query = ImageQuery.model_validate(dict(request.query))
    page = await request.app[SOURCE].images(dataset_of(request), version_of(request), query)
    return web.json_response(page.to_json())


async def dataset_image(request: web.Request) -> web.Response:
    await checked(request, verbs.GET, verbs.DATASETS)
    sha256 = checked_sha256(request.match_info["sha256"])
    data = await request.app[SOURCE].image_bytes(dataset_of(request), version_of(request), sha256)
    response = web.Response(body=data, content_type=image_type(data))
    # Content-addressed: the bytes behind a hash never change.
    response.headers["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def image_type(data: bytes) -> str:
    """An image's content type from its first bytes; opaque bytes for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in IMAGE_TYPES if data.startswith(magic)), "application/octet-stream")


async def import_state(request: web.Request) -> web.Response:
    await checked(request, verbs.GET, verbs.DATASETS)
    return web.json_response((await request.app[SOURCE].import_state(dataset_of(request))).to_json())


IMPORT_FIELDS: Final = ("namespace", "name", "task", "source")


async def start_import(request: web.Request) -> web.Response:
    """A form: ``namespace``, ``name``, ``task``, and either a ``file`` (zip, multipart) or a ``source`` path/URI."""
    await checked(request, verbs.CREATE, verbs.DATASETS)
    fields: dict[str, str] = {}
    upload: Path | None = None
    try:
        if request.content_type == "application/x-www-form-urlencoded":
            posted = await request.post()
            fields = {name: str(posted[name]) for name in IMPORT_FIELDS if name in posted}
        elif request.content_type.startswith("multipart/"):
            fields, upload = await read_import_form(request)
        else:
            raise FormError("send the import form as multipart/form-data")
        import_request = ImportRequest(
            dataset=DatasetRef(namespace=fields.get("namespace", ""), name=fields.get("name", "")),
            task=Task(fields.get("task") or Task.SINGLE_LABEL.value),
            source=(fields.get("source") or "").strip() or None,
            upload=upload,
        )
        if (import_request.source is None) == (upload is None):
            raise FormError("give either a zip to upload or a path or URI, not both and not neither")
        await request.app[SOURCE].start_import(import_request)
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    return web.json_response({"dataset": import_request.dataset.to_json()}, status=202)


async def read_import_form(request: web.Request) -> tuple[dict[str, str], Path | None]:
    """The multipart import form's fields, and its zip streamed to the upload folder (when one was sent)."""
    fields: dict[str, str] = {}
    upload: Path | None = None
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                raise FormError("malformed form")
            if part.name == "file" and part.filename:
                if upload is not None:
                    raise FormError("send one zip at a time")
                upload = await receive_zip(part, request.app[CONFIG])
            elif part.name in IMPORT_FIELDS:
                fields[part.name] = (await part.read(decode=True)).decode("utf-8", "replace")[:4096]
    except BaseException:
        if upload is not None:
            upload.unlink(missing_ok=True)
        raise
    return fields, upload


async def receive_zip(part: BodyPartReader, config: ConsoleConfig) -> Path:
    """Stream an uploaded zip to the upload folder, refusing it (and keeping nothing) past the size limit."""
    config.upload_dir.mkdir(parents=True, exist_ok=True)
    path = config.upload_dir / f"{uuid.uuid4().hex}.zip"
    size = 0
    try:
        with path.open("wb") as output:
            while chunk := await part.read_chunk(UPLOAD_CHUNK):
                if size == 0 and not chunk.startswith(ZIP_MAGIC):
                    raise FormError(f"{part.filename} is not a zip file")
                size += len(chunk)
                if size > config.max_upload_bytes:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=config.max_upload_bytes,
                        actual_size=size,
                        text=f"the upload is over the limit of {config.max_upload_bytes:,} bytes: "
                        "import from a path or URI instead",
                    )
                output.write(chunk)
        if size == 0:
            raise FormError(f"{part.filename} is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


# --- runs -------------------------------------------------------------------------


def run_of(request: web.Request) -> RunRef:
    """The run named by the route."""
    info = request.match_info
    return RunRef(namespace=info["namespace"], job=info["job"], uid=info["uid"])


async def list_runs(request: web.Request) -> web.Response:
    await checked(request, verbs.LIST, verbs.TRAINING_JOBS)
    return web.json_response([run.to_json() for run in await request.app[SOURCE].list_runs()])


async def run_detail(request: web.Request) -> web.Response:
    await checked(request, verbs.GET, verbs.TRAINING_JOBS)
    return web.json_response((await request.app[SOURCE].run_detail(run_of(request))).to_json())


async def run_evaluation(request: web.Request) -> web.Response:
    await checked(request, verbs.GET, verbs.TRAINING_JOBS)
    view = await request.app[SOURCE].evaluation(run_of(request))
    return web.json_response(text=json.dumps(view.to_json(), separators=(",", ":")))


async def start_training(request: web.Request) -> web.Response:
    """A JSON body with ``autovision train``'s choices."""
    await checked(request, verbs.CREATE, verbs.TRAINING_JOBS)
    try:
        body = await request.json()
    except json.JSONDecodeError as error:
        raise FormError("send the training form as JSON") from error
    run = await request.app[SOURCE].start_training(TrainingRequest.model_validate(body))
    return web.json_response(run.to_json(), status=202)


# --- deployments -------------------------------------------------------------------


async def list_deployments(request: web.Request) -> web.Response:
    await checked(request, verbs.LIST, verbs.MODEL_DEPLOYMENTS)
    return web.json_response([item.to_json() for item in await request.app[SOURCE].list_deployments()])


async def predict(request: web.Request) -> web.Response:
    """A multipart form with an ``image`` (at most the image size limit) and an optional ``topK``."""
    await checked(request, verbs.CREATE, verbs.PREDICT)
    deployment = DeploymentRef(namespace=request.match_info["namespace"], name=request.match_info["name"])
    limit = request.app[CONFIG].max_image_bytes
    if not request.content_type.startswith("multipart/"):
        raise FormError("send the image as multipart/form-data")
    image, top_k = bytearray(), DEFAULT_TOP_K
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise FormError("malformed form")
        if part.name == "image":
            image.clear()
            while chunk := await part.read_chunk(UPLOAD_CHUNK):
                image += chunk
                if len(image) > limit:
                    raise web.HTTPRequestEntityTooLarge(
                        max_size=limit, actual_size=len(image), text=f"the image is over the limit of {limit:,} bytes"
                    )
        elif part.name == "topK":
            top_k = int((await part.text()).strip() or DEFAULT_TOP_K)
    if not image:
        raise FormError("no image sent")
    if not 1 <= top_k <= MAX_TOP_K:
        raise FormError(f"topK must lie in 1..{MAX_TOP_K}")
    labels = await request.app[SOURCE].predict(deployment, bytes(image), top_k)
    return web.json_response([label.to_json() for label in labels])


async def options(request: web.Request) -> web.Response:
    """The form choices and limits the page shows (the same as ``autovision train`` and ``dataset import``)."""
    config = request.app[CONFIG]
    return web.json_response(
        {
            "optimizeFor": [choice.value for choice in OptimizeFor],
            "tasks": [task.value for task in Task],
            "maxUploadBytes": config.max_upload_bytes,
            "maxImageBytes": config.max_image_bytes,
            "local": GUARD not in request.app,
        }
    )


def build_console_app(
    source: ConsoleSource, *, guard: ConsoleGuard | None = None, config: ConsoleConfig | None = None
) -> web.Application:
    """The console's application over ``source``; with a ``guard``, every API call is checked first."""
    config = config or ConsoleConfig()
    # The upload limit is enforced while streaming; aiohttp's own cap leaves room for the form's other fields.
    app = web.Application(
        middlewares=[errors_middleware, csrf_middleware], client_max_size=config.max_upload_bytes + UPLOAD_CHUNK
    )
    app[SOURCE] = source
    app[CONFIG] = config
    app[ASSETS] = static_assets()
    if guard is not None:
        app[GUARD] = guard
    app.on_response_prepare.append(security_headers)
    dataset = "/api/datasets/{namespace}/{name}"
    version = dataset + "/versions/{version}"
    run = "/api/runs/{namespace}/{job}/{uid}"
    app.router.add_get("/", index)
    app.router.add_get("/static/{name:.+}", static)
    app.router.add_get("/api/options", options)
    app.router.add_get("/api/datasets", list_datasets)
    app.router.add_post("/api/datasets", start_import)
    app.router.add_get(f"{dataset}/import", import_state)
    app.router.add_get(f"{version}/report", dataset_report)
    app.router.add_get(f"{version}/images", dataset_images)
    app.router.add_get(version + "/images/{sha256}", dataset_image)
    app.router.add_get("/api/runs", list_runs)
    app.router.add_post("/api/runs", start_training)
    app.router.add_get(run, run_detail)
    app.router.add_get(f"{run}/evaluation", run_evaluation)
    app.router.add_get("/api/deployments", list_deployments)
    app.router.add_post("/api/deployments/{namespace}/{name}/predict", predict)
    return app
