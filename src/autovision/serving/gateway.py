"""AutoML-compatible JSON predictions in front of Triton.

Google AutoML Vision clients send ``POST /v1/models/{name}:predict`` with a base64
image and get ``displayName`` + ``classification.score`` back. This small aiohttp
server speaks that dialect and forwards to Triton over KServe v2 HTTP, so the same
model answers KServe v2 (HTTP, gRPC) and AutoML JSON. Request parsing and response
building are pure functions; only ``create_app`` and ``GatewayServer`` do I/O.

Under load the gateway holds a bounded amount: ``max_concurrency`` requests are read
and forwarded at once, ``max_queue`` more wait (unread), and any further one is
answered 503 with ``Retry-After`` at once. A body not received in time is dropped
(408); a Triton that is gone or too slow gives 503 with ``Retry-After``, and the
gateway serves again as soon as Triton is back.

Several models can stand behind one gateway (``traffic.Routes``, from
``AUTOVISION_GATEWAY_ROUTES``): each request goes to one model's Triton by the split,
its answer names the run in the ``X-AutoVision-Model`` header, an optional shadow gets
a copy (``router``), and ``GET /v1/traffic`` serves this replica's counts per model.

With a log rate (``AUTOVISION_GATEWAY_LOG_RATE``) the router logs a sample of the
answered requests, whatever their dialect, through ``prediction_log``; ``GET /metrics``
serves its counters (Prometheus text), with no token needed, like ``/healthz``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import tritonclient.http.aio as triton_http
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tritonclient.utils import InferenceServerException

from autovision.contract import env
from autovision.contract.files import EMBEDDING_OUTPUT
from autovision.preprocess import ImageLimits
from autovision.serving.client import Prediction, parse_classification
from autovision.serving.prediction_log import LOCAL_NAMESPACE, LogSettings, PredictionLog
from autovision.serving.repository import INPUT_NAME, OUTPUT_NAME
from autovision.serving.traffic import MODEL_HEADER, STATS_PATH, Routes
from autovision.settings import Settings

if TYPE_CHECKING:
    # access and router import this module (GatewayError, Upstream); the gateway builds them in create_app.
    from autovision.serving.access import AccessConfig, Gatekeeper
    from autovision.serving.router import Router

DEFAULT_SCORE_THRESHOLD = 0.5
# Seconds a client is told to wait: a full queue drains within a request's time; a
# restarting Triton needs its model loaded again.
RETRY_AFTER_BUSY_S = 1
RETRY_AFTER_UNAVAILABLE_S = 5
HEALTH_TIMEOUT_S = 5.0


class GatewayError(Exception):
    """A request the gateway refuses, with the HTTP status to answer (and when to retry, for a 503)."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class PredictRequest:
    """One AutoML predict request, decoded."""

    image: bytes
    score_threshold: float


def max_request_bytes(max_image_bytes: int) -> int:
    """Largest JSON body to accept: the base64 of the largest image plus room for params."""
    return (max_image_bytes + 2) // 3 * 4 + 64 * 1024


def parse_predict_request(body: Any, max_image_bytes: int, default_threshold: float) -> PredictRequest:
    """Validate an AutoML predict body; raise GatewayError with a 4xx status."""
    image = body.get("payload", {}).get("image", {}) if isinstance(body, dict) else None
    encoded = image.get("imageBytes") if isinstance(image, dict) else None
    if not isinstance(encoded, str) or not encoded:
        raise GatewayError(400, 'expected {"payload": {"image": {"imageBytes": "<base64>"}}}')
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise GatewayError(400, f"payload.image.imageBytes is not valid base64: {error}") from error
    if len(data) > max_image_bytes:
        raise GatewayError(413, f"image of {len(data)} bytes exceeds the {max_image_bytes}-byte limit")
    return PredictRequest(image=data, score_threshold=_score_threshold(body.get("params"), default_threshold))


def _score_threshold(params: Any, default: float) -> float:
    raw = params.get("score_threshold", default) if isinstance(params, dict) else default
    try:
        threshold = float(raw)
    except (TypeError, ValueError) as error:
        raise GatewayError(400, f"params.score_threshold must be a number in [0, 1], got {raw!r}") from error
    if not 0.0 <= threshold <= 1.0:
        raise GatewayError(400, f"params.score_threshold must be in [0, 1], got {threshold}")
    return threshold


def build_predict_response(scored: list[tuple[str, float]], score_threshold: float) -> dict[str, Any]:
    """AutoML's response: labels at or above the threshold, best first."""
    kept = sorted((item for item in scored if item[1] >= score_threshold), key=lambda item: -item[1])
    return {"payload": [{"displayName": label, "classification": {"score": score}} for label, score in kept]}


def error_response(error: GatewayError) -> web.Response:
    """A refused request in the gateway's own JSON shape (with Retry-After where the refusal says when)."""
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    body = {"error": {"code": error.status, "message": error.message}}
    return web.json_response(body, status=error.status, headers=headers)


@dataclass
class GatewayConfig:
    """What one gateway serves (the Triton model behind it, the name clients use) and its bounds."""

    triton_url: str
    model_name: str = "autovision"
    public_name: str = "autovision"
    default_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_image_bytes: int = ImageLimits().max_bytes
    max_concurrency: int = Settings.model_fields["gateway_max_concurrency"].default
    max_queue: int = Settings.model_fields["gateway_max_queue"].default
    body_timeout_s: float = Settings.model_fields["gateway_body_timeout_seconds"].default
    upstream_timeout_s: float = Settings.model_fields["gateway_upstream_timeout_seconds"].default
    # host:port of the gRPC Google PredictionService (google_grpc); None serves REST only.
    grpc_address: str | None = None
    # Whose bearer tokens may predict (a ModelDeployment's spec.auth.requireToken); None checks none.
    access: AccessConfig | None = None
    # Several models and their split (a ModelDeployment's spec.traffic); None: triton_url's one model.
    routes: Routes | None = None
    # Where :explain is forwarded (the explainer's base URL); None answers it 404 (see explain_route).
    explainer_url: str | None = None
    # What the prediction log samples and where it writes; None logs nothing (see prediction_log).
    logging: LogSettings | None = None

    def routing(self) -> Routes:
        """The models behind this gateway: ``routes``, or the one at ``triton_url`` named by its model name."""
        return self.routes or Routes.single(self.model_name, self.triton_url)

    @classmethod
    def from_settings(cls, triton_url: str, settings: Settings, **names: Any) -> GatewayConfig:
        """A gateway bounded as the settings say; ``names`` sets the model names and threshold.

        It logs predictions at the settings' rate under its ModelDeployment's name and namespace
        (``local`` and its public name when the settings name none, as ``autovision serve`` runs it).
        """
        config = cls(
            triton_url,
            max_image_bytes=settings.max_image_bytes,
            max_concurrency=settings.gateway_max_concurrency,
            max_queue=settings.gateway_max_queue,
            body_timeout_s=settings.gateway_body_timeout_seconds,
            upstream_timeout_s=settings.gateway_upstream_timeout_seconds,
            routes=settings.gateway_routes,
            explainer_url=settings.gateway_explainer_url,
            **names,
        )
        if settings.gateway_log_rate > 0:
            config.logging = LogSettings(
                rate=settings.gateway_log_rate,
                images=settings.gateway_log_images,
                storage=settings,
                namespace=settings.gateway_deployment_namespace or LOCAL_NAMESPACE,
                deployment=settings.gateway_deployment_name or config.public_name,
            )
        return config


class Admission:
    """At most ``slots`` requests at work and ``queue`` waiting for a slot; any other one is refused at once.

    A refused request costs nothing but its answer, so memory and latency stay
    bounded however many clients connect.
    """

    def __init__(self, slots: int, queue: int) -> None:
        self._free = asyncio.Semaphore(slots)
        self._queue = queue
        self._waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the body of the ``async with``; GatewayError 503 when the queue is full."""
        if self._free.locked() and self._waiting >= self._queue:
            raise GatewayError(503, "the gateway is busy: too many requests waiting", RETRY_AFTER_BUSY_S)
        self._waiting += 1
        try:
            await self._free.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._free.release()


@dataclass(frozen=True)
class ModelOutputs:
    """What a served model outputs: its label count, and whether it exports an embedding (``EMBEDDING_OUTPUT``)."""

    num_labels: int
    embedding: bool

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelOutputs:
        """Read from Triton's model metadata (KServe v2 JSON)."""
        outputs = {output["name"]: output for output in metadata["outputs"]}
        return cls(num_labels=int(outputs[OUTPUT_NAME]["shape"][-1]), embedding=EMBEDDING_OUTPUT in outputs)


class Upstream:
    """One model's Triton client, and the model's outputs, learnt on first use.

    Learning them lazily lets the gateway start before Triton has loaded the model
    (in a pod both containers start together); until then /healthz answers 503.
    """

    def __init__(self, config: GatewayConfig, triton_url: str) -> None:
        self.config = config
        # conn_timeout bounds each whole call, so a hung Triton never holds a slot for longer.
        self.client = triton_http.InferenceServerClient(triton_url, conn_timeout=config.upstream_timeout_s)
        self._outputs: ModelOutputs | None = None

    async def outputs(self) -> ModelOutputs:
        """The model's outputs; GatewayError 503 while Triton has not loaded it."""
        if self._outputs is None:
            try:
                metadata = await self.client.get_model_metadata(self.config.model_name)
            except (InferenceServerException, *UNREACHABLE) as error:
                raise _unavailable(f"model {self.config.model_name!r} is not ready in Triton yet") from error
            self._outputs = ModelOutputs.from_metadata(metadata)
        return self._outputs

    async def ready(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.is_model_ready(self.config.model_name), HEALTH_TIMEOUT_S))
        except (InferenceServerException, *UNREACHABLE):
            return False


# What a Triton that is down, restarting or hung raises below tritonclient.
UNREACHABLE = (OSError, aiohttp.ClientError, TimeoutError)


def _unavailable(message: str) -> GatewayError:
    return GatewayError(503, message, RETRY_AFTER_UNAVAILABLE_S)


ROUTER: web.AppKey[Router] = web.AppKey("router")
ADMISSION = web.AppKey("admission", Admission)
GATEKEEPER: web.AppKey[Gatekeeper | None] = web.AppKey("gatekeeper")
PREDICTION_LOG = web.AppKey("prediction_log", PredictionLog)
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
# Paths anyone may read, token checks or not: probes and Prometheus scrapes (counts, no predictions).
OPEN_PATHS = frozenset({HEALTH_PATH, METRICS_PATH})


@dataclass(frozen=True)
class Classified:
    """One image's answer: every label's score, and the model's embedding when it was asked for."""

    predictions: list[Prediction]
    embedding: list[float] | None = None


async def classify_image(upstream: Upstream, image: bytes, embedding: bool = False) -> Classified:
    """Every label's score for one image from Triton (with its index), and with ``embedding`` the model's
    embedding if it exports one; GatewayError when Triton refuses or fails."""
    image_input = triton_http.InferInput(INPUT_NAME, [1, 1], "BYTES")
    image_input.set_data_from_numpy(np.array([[image]], dtype=np.object_))
    outputs = await upstream.outputs()
    requested = [triton_http.InferRequestedOutput(OUTPUT_NAME, class_count=outputs.num_labels)]
    embedding = embedding and outputs.embedding
    if embedding:
        requested.append(triton_http.InferRequestedOutput(EMBEDDING_OUTPUT))
    try:
        result = await upstream.client.infer(upstream.config.model_name, [image_input], outputs=requested)
    except InferenceServerException as error:
        # Triton answers 400 for a request it refuses (an undecodable or too large
        # image) and 503 while it is overloaded or loading; anything else is its failure.
        message = error.message() or "Triton refused the request"
        if error.status() == "503":
            raise _unavailable(message) from error
        raise GatewayError(400 if error.status() == "400" else 502, message) from error
    except UNREACHABLE as error:
        raise _unavailable(f"Triton is unreachable or did not answer in time ({type(error).__name__})") from error
    vector = result.as_numpy(EMBEDDING_OUTPUT) if embedding else None
    return Classified(
        parse_classification(result.as_numpy(OUTPUT_NAME)),
        None if vector is None else [float(value) for value in np.ravel(vector)],
    )


async def read_json_body(request: web.Request, max_image_bytes: int, body_timeout_s: float) -> Any:
    """The request's JSON body, received within the body timeout and the size limit (the gateway's and the
    explainer's one reading of a body, so both refuse slow and oversized bodies alike)."""
    try:
        raw = await asyncio.wait_for(request.read(), body_timeout_s)
    except TimeoutError:
        raise GatewayError(408, f"request body not received within {body_timeout_s:g} s") from None
    except web.HTTPRequestEntityTooLarge:
        raise GatewayError(413, f"request body exceeds {max_request_bytes(max_image_bytes)} bytes") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise GatewayError(400, "request body is not JSON") from None


def _refusal(request: web.Request, error: GatewayError) -> web.Response:
    """A refused request in its path's dialect: Google's error shape on Google's paths, the gateway's elsewhere."""
    if request.path.startswith("/v1/projects/"):
        from autovision.serving.google_rest import google_error

        response = google_error(error)
    else:
        response = error_response(error)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@web.middleware
async def _require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every path but /healthz and /metrics answers only callers the Gatekeeper lets through, before the body
    is read."""
    gatekeeper = request.app[GATEKEEPER]
    if gatekeeper is not None and request.path not in OPEN_PATHS:
        try:
            await gatekeeper.check(request.headers.get("Authorization"))
        except GatewayError as error:
            return _refusal(request, error)
    response: web.StreamResponse = await handler(request)
    return response


def create_app(config: GatewayConfig) -> web.Application:
    """The gateway's aiohttp application, forwarding to the Triton models ``config`` routes to."""
    app = web.Application(client_max_size=max_request_bytes(config.max_image_bytes), middlewares=[_require_token])

    async def connect(app: web.Application) -> Any:
        from autovision.serving.router import Router

        app[PREDICTION_LOG] = PredictionLog(config.logging)
        app[PREDICTION_LOG].start()
        app[ROUTER] = Router(config, config.routing(), app[PREDICTION_LOG])
        app[ROUTER].start()
        app[ADMISSION] = Admission(config.max_concurrency, config.max_queue)
        app[GATEKEEPER] = None
        if config.access is not None:
            from autovision.serving.access import Gatekeeper

            app[GATEKEEPER] = Gatekeeper(config.access)
        yield
        await app[ROUTER].close()
        await app[PREDICTION_LOG].close()
        gatekeeper = app[GATEKEEPER]
        if gatekeeper is not None:
            await gatekeeper.close()

    async def predict(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            if name != config.public_name:
                raise GatewayError(404, f"model {name!r} is not served here; this serves {config.public_name!r}")
            async with request.app[ADMISSION].slot():
                parsed = parse_predict_request(
                    await read_json_body(request, config.max_image_bytes, config.body_timeout_s),
                    config.max_image_bytes,
                    config.default_threshold,
                )
                router = request.app[ROUTER]
                run, scored = await router.classify([parsed.image], router.sticky_value(request.headers))
        except GatewayError as error:
            return error_response(error)
        labels = [(p.label, p.score) for p in scored[0]]
        return web.json_response(build_predict_response(labels, parsed.score_threshold), headers={MODEL_HEADER: run})

    async def healthz(request: web.Request) -> web.Response:
        """200 once every model that gets a share of the requests (percent > 0) is ready; the shadow's readiness
        does not count, so a shadow that is down or loading never takes the endpoint out of service."""
        ready = await request.app[ROUTER].ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        """The prediction log's counters, in Prometheus' text format."""
        body = generate_latest(request.app[PREDICTION_LOG].metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def traffic(request: web.Request) -> web.Response:
        """This replica's requests, errors, latencies and shadow agreement per model (the operator merges replicas)."""
        return web.Response(text=request.app[ROUTER].stats.model_dump_json(), content_type="application/json")

    app.cleanup_ctx.append(connect)
    app.router.add_post("/v1/models/{name:[^/:]+}:predict", predict)
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(STATS_PATH, traffic)
    app.router.add_get(METRICS_PATH, metrics)
    # Google's AutoML v1 and Vertex AI dialects; those modules import this one. gRPC needs
    # the google extra (the clients' message classes), so it is imported only when served.
    from autovision.serving import google_rest

    google_rest.add_routes(app, config)
    from autovision.serving.explain_route import add_explain_route

    add_explain_route(app, config)
    if config.grpc_address is not None:
        from autovision.serving import google_grpc

        app.cleanup_ctx.append(google_grpc.serving(config.grpc_address, config))
    return app


class GatewayServer:
    """Runs the gateway on 127.0.0.1 in a background thread (local runtime, tests)."""

    def __init__(self, config: GatewayConfig, port: int) -> None:
        self.config = config
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="autovision-gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=60)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(create_app(self.config))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m autovision.serving.gateway``: the gateway container of a ModelDeployment pod."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")  # a pod's container listens on the pod IP
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--triton-url",
        default="localhost:8000",
        help=f"Triton KServe v2 HTTP, host:port (unused when {env.GATEWAY_ROUTES} names the models)",
    )
    parser.add_argument("--model-name", default="autovision", help="the model's name inside Triton")
    parser.add_argument("--public-name", default=None, help="the name in /v1/models/NAME:predict (default: model name)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    parser.add_argument("--grpc-port", type=int, default=None, help="Google's PredictionService over gRPC")
    args = parser.parse_args(argv)
    from autovision.serving.access import access_config

    settings = Settings()
    config = GatewayConfig.from_settings(
        args.triton_url,
        settings,
        model_name=args.model_name,
        public_name=args.public_name or args.model_name,
        default_threshold=args.score_threshold,
        grpc_address=None if args.grpc_port is None else f"{args.host}:{args.grpc_port}",
        access=access_config(settings),
    )
    web.run_app(create_app(config), host=args.host, port=args.port)


if __name__ == "__main__":
    # The importable module's main, not this __main__ copy's: the Google dialects import
    # autovision.serving.gateway, and the app must be built with that module's app keys.
    from autovision.serving.gateway import main as importable_main

    importable_main()
