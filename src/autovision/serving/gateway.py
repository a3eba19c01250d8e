"""AutoML-compatible JSON predictions in front of Triton.

Google AutoML Vision clients send ``POST /v1/models/{name}:predict`` with a base64
image and get ``displayName`` + ``classification.score`` back. This small aiohttp
server speaks that dialect and forwards to Triton over KServe v2 HTTP, so the same
model answers KServe v2 (HTTP, gRPC) and AutoML JSON. Request parsing and response
building are pure functions; only ``create_app`` and ``GatewayServer`` do I/O.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.http.aio as triton_http
from aiohttp import web
from tritonclient.utils import InferenceServerException

from autovision.serving.client import parse_classification
from autovision.serving.repository import INPUT_NAME, OUTPUT_NAME

DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
DEFAULT_SCORE_THRESHOLD = 0.5


class GatewayError(Exception):
    """A request the gateway refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


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


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


@dataclass
class GatewayConfig:
    """What one gateway serves: the Triton model behind it and the name clients use."""

    triton_url: str
    model_name: str = "autovision"
    public_name: str = "autovision"
    default_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES


class _Upstream:
    """The Triton client, and the model's label count, learnt on first use.

    Learning it lazily lets the gateway start before Triton has loaded the model
    (in a pod both containers start together); until then /healthz answers 503.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.client = triton_http.InferenceServerClient(config.triton_url)
        self._num_labels: int | None = None

    async def num_labels(self) -> int:
        if self._num_labels is None:
            try:
                metadata = await self.client.get_model_metadata(self.config.model_name)
            except (InferenceServerException, OSError) as error:
                raise GatewayError(503, f"model {self.config.model_name!r} is not ready in Triton yet") from error
            output = next(o for o in metadata["outputs"] if o["name"] == OUTPUT_NAME)
            self._num_labels = int(output["shape"][-1])
        return self._num_labels

    async def ready(self) -> bool:
        try:
            return bool(await self.client.is_model_ready(self.config.model_name))
        except (InferenceServerException, OSError):
            return False


UPSTREAM = web.AppKey("upstream", _Upstream)


async def _classify(upstream: _Upstream, image: bytes) -> list[tuple[str, float]]:
    image_input = triton_http.InferInput(INPUT_NAME, [1, 1], "BYTES")
    image_input.set_data_from_numpy(np.array([[image]], dtype=np.object_))
    output = triton_http.InferRequestedOutput(OUTPUT_NAME, class_count=await upstream.num_labels())
    try:
        result = await upstream.client.infer(upstream.config.model_name, [image_input], outputs=[output])
    except InferenceServerException as error:
        # Triton answers 400 for a request it refuses (an undecodable image); anything
        # else is the upstream's failure, not the client's.
        status = 400 if error.status() == "400" else 502
        raise GatewayError(status, error.message() or "Triton refused the request") from error
    return [(p.label, p.score) for p in parse_classification(result.as_numpy(OUTPUT_NAME))]


def create_app(config: GatewayConfig) -> web.Application:
    """The gateway's aiohttp application, forwarding to the Triton model in ``config``."""
    app = web.Application(client_max_size=max_request_bytes(config.max_image_bytes))

    async def connect(app: web.Application) -> Any:
        app[UPSTREAM] = _Upstream(config)
        yield
        await app[UPSTREAM].client.close()

    async def predict(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name != config.public_name:
            return _error(404, f"model {name!r} is not served here; this serves {config.public_name!r}")
        try:
            body = await request.json()
            parsed = parse_predict_request(body, config.max_image_bytes, config.default_threshold)
            scored = await _classify(request.app[UPSTREAM], parsed.image)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request body exceeds {max_request_bytes(config.max_image_bytes)} bytes")
        except ValueError:
            return _error(400, "request body is not JSON")
        except GatewayError as error:
            return _error(error.status, error.message)
        return web.json_response(build_predict_response(scored, parsed.score_threshold))

    async def healthz(request: web.Request) -> web.Response:
        ready = await request.app[UPSTREAM].ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    app.cleanup_ctx.append(connect)
    app.router.add_post("/v1/models/{name:[^/:]+}:predict", predict)
    app.router.add_get("/healthz", healthz)
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
    parser.add_argument("--triton-url", default="localhost:8000", help="Triton KServe v2 HTTP, host:port")
    parser.add_argument("--model-name", default="autovision", help="the model's name inside Triton")
    parser.add_argument("--public-name", default=None, help="the name in /v1/models/NAME:predict (default: model name)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    parser.add_argument("--max-image-bytes", type=int, default=DEFAULT_MAX_IMAGE_BYTES)
    args = parser.parse_args(argv)
    config = GatewayConfig(
        triton_url=args.triton_url,
        model_name=args.model_name,
        public_name=args.public_name or args.model_name,
        default_threshold=args.score_threshold,
        max_image_bytes=args.max_image_bytes,
    )
    web.run_app(create_app(config), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
