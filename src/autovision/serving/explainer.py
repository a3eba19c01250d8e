"""The explainer: ``POST /v1/models/{name}:explain``, the AutoML prediction plus where the model looked.

It answers what the gateway's ``:predict`` answers (same request, same limits,
same response shape, computed from the run's TorchScript with the one shared
preprocessing) and adds, for the top label or a label asked for, a heatmap as a
PNG overlay (base64) and as a coarse attribution grid. The gateway has no torch
and a small memory request, so this runs on its own (its own Deployment in a
cluster, ``autovision serve --explain`` locally) and the gateway forwards to it.

Bounded like the gateway: the image's bytes and pixels, the request body, steps
(at most ``MAX_STEPS``), a time limit per explanation (504 past it, with the
work stopped between integrated gradients' chunks) and a few explanations at
once (503 beyond the queue). Request params, beside ``score_threshold``:
``label`` (a label of the model; default the top one), ``method`` (``grad_cam``
or ``integrated_gradients``), ``steps`` and ``grid``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from aiohttp import web

from autovision.contract.files import ModelCard
from autovision.contract.keys import TORCHSCRIPT_FILE
from autovision.evaluate.metrics import activate
from autovision.explain.base import (
    DEFAULT_GRID,
    DEFAULT_STEPS,
    Deadline,
    ExplainedModel,
    ExplainError,
    ExplainSettings,
    ExplainTimeoutError,
)
from autovision.explain.methods import attribute, explained_model
from autovision.explain.render import attribution_grid, overlay_png
from autovision.export.layout import ModelLocation, locate_model
from autovision.preprocess import ImageLimitError, ImageLimits, PreprocessConfig, decode_image, image_to_array
from autovision.preprocess import resized_pixels as model_pixels
from autovision.serving.gateway import (
    DEFAULT_SCORE_THRESHOLD,
    Admission,
    GatewayError,
    PredictRequest,
    build_predict_response,
    error_response,
    max_request_bytes,
    parse_predict_request,
    read_json_body,
)
from autovision.settings import Settings

# Explanations are CPU-heavy: this many at once, this many more waiting, the rest refused (503).
DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE = 8
DEFAULT_TIME_LIMIT_S = 30.0
EXPLAIN_PATH = "/v1/models/{name:[^/:]+}:explain"


@dataclass(frozen=True)
class ExplainRequest:
    """One :explain request, decoded: the predict request, the label asked for (or None) and the settings."""

    predict: PredictRequest
    label: str | None
    settings: ExplainSettings


def parse_explain_request(body: Any, max_image_bytes: int, default_threshold: float) -> ExplainRequest:
    """A predict body (see the gateway's ``parse_predict_request``) with the explanation's params; GatewayError
    400 for bad params, steps past the cap included."""
    predict = parse_predict_request(body, max_image_bytes, default_threshold)
    params = body.get("params")
    params = params if isinstance(params, dict) else {}
    label = params.get("label")
    if label is not None and not isinstance(label, str):
        raise GatewayError(400, f"params.label must be a label name, got {label!r}")
    try:
        settings = ExplainSettings(
            method=params.get("method", "grad_cam"),
            steps=_integer(params, "steps", DEFAULT_STEPS),
            grid=_integer(params, "grid", DEFAULT_GRID),
        )
    except ExplainError as error:
        raise GatewayError(400, f"params: {error}") from error
    return ExplainRequest(predict=predict, label=label, settings=settings)


def _integer(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise GatewayError(400, f"params.{name} must be an integer, got {value!r}")
    return value


@dataclass(frozen=True)
class ExplainerConfig:
    """What one explainer serves and its bounds."""

    public_name: str = "autovision"
    default_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_image_bytes: int = ImageLimits().max_bytes
    max_image_pixels: int = ImageLimits().max_pixels
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    max_concurrency: int = DEFAULT_CONCURRENCY
    max_queue: int = DEFAULT_QUEUE
    body_timeout_s: float = Settings.model_fields["gateway_body_timeout_seconds"].default


class LoadedModel:
    """A run's TorchScript with what its model card says about it: labels, preprocessing, family, task."""

    def __init__(self, module: torch.nn.Module, card: ModelCard) -> None:
        self.card = card
        self.module = module.eval()
        self.explained: ExplainedModel = explained_model(self.module, card.architecture)
        self.preprocess = PreprocessConfig(size=card.input_size, mean=card.mean, std=card.std)

    @classmethod
    def from_location(cls, location: ModelLocation) -> LoadedModel:
        """Read model.pt and model.json of a finished model directory (any storage)."""
        data = location.storage.read_bytes(location.key(TORCHSCRIPT_FILE))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still what Triton loads
            module = torch.jit.load(io.BytesIO(data), map_location="cpu")  # type: ignore[no-untyped-call]
        return cls(module, location.card())

    def explain(self, request: ExplainRequest, limits: ImageLimits, deadline: Deadline) -> dict[str, Any]:
        """The AutoML prediction and the explanation of the asked (or top) label; GatewayError 400 for an
        image or label this model cannot take, ExplainTimeoutError past the deadline."""
        try:
            image = decode_image(request.predict.image, limits, self.preprocess.size)
        except ImageLimitError as error:
            raise GatewayError(413 if "byte" in str(error) else 400, str(error)) from error
        except (OSError, ValueError) as error:
            raise GatewayError(400, f"the image cannot be decoded: {error}") from error
        inputs = torch.from_numpy(image_to_array(image, self.preprocess))[None]
        with torch.no_grad():
            logits = self.explained(inputs)
        scores = activate(logits.numpy().astype(np.float32), self.card.multi_label)[0]
        labels = self.card.labels
        target = int(scores.argmax()) if request.label is None else self._label_index(request.label)
        try:
            attribution = attribute(
                self.explained,
                inputs,
                torch.tensor([target]),
                request.settings,
                num_classes=len(labels),
                deadline=deadline,
            )[0]
        except ExplainError as error:
            raise GatewayError(400, str(error)) from error
        overlay = overlay_png(model_pixels(image, self.preprocess.size), attribution)
        response = build_predict_response(
            [(label, float(score)) for label, score in zip(labels, scores, strict=True)],
            request.predict.score_threshold,
        )
        response["explanation"] = {
            "displayName": labels[target],
            "score": float(scores[target]),
            **request.settings.describe(),
            "overlayPng": base64.b64encode(overlay).decode("ascii"),
            "grid": attribution_grid(attribution, request.settings.grid),
        }
        return response

    def _label_index(self, label: str) -> int:
        if label not in self.card.labels:
            raise GatewayError(
                400, f"params.label {label!r} is not a label of this model: {', '.join(self.card.labels)}"
            )
        return self.card.labels.index(label)


MODEL = web.AppKey("model", LoadedModel)
EXPLAIN_ADMISSION = web.AppKey("explain_admission", Admission)


def create_explainer_app(model: LoadedModel, config: ExplainerConfig) -> web.Application:
    """The explainer's aiohttp application for one loaded model."""
    app = web.Application(client_max_size=max_request_bytes(config.max_image_bytes))
    app[MODEL] = model
    limits = ImageLimits(max_bytes=config.max_image_bytes, max_pixels=config.max_image_pixels)

    async def admit(app: web.Application) -> Any:
        app[EXPLAIN_ADMISSION] = Admission(config.max_concurrency, config.max_queue)
        yield

    async def explain(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            if name != config.public_name:
                raise GatewayError(404, f"model {name!r} is not served here; this serves {config.public_name!r}")
            async with request.app[EXPLAIN_ADMISSION].slot():
                body = await read_json_body(request, config.max_image_bytes, config.body_timeout_s)
                parsed = parse_explain_request(body, config.max_image_bytes, config.default_threshold)
                deadline = Deadline.after(config.time_limit_s)
                answer = await asyncio.to_thread(request.app[MODEL].explain, parsed, limits, deadline)
        except GatewayError as error:
            return error_response(error)
        except ExplainTimeoutError:
            return error_response(
                GatewayError(504, f"the explanation took longer than its {config.time_limit_s:g} s limit")
            )
        return web.json_response(answer)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    app.cleanup_ctx.append(admit)
    app.router.add_post(EXPLAIN_PATH, explain)
    app.router.add_get("/healthz", healthz)
    return app


def serving_beside(
    explainer: web.Application, host: str, port: int
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that serves ``explainer`` on ``host:port`` for as long as the app it is added to runs:
    how ``autovision serve --explain`` runs the explainer in the gateway's event loop (its work runs in threads)."""

    async def serve(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(explainer)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        yield
        await runner.cleanup()

    return serve


def main(argv: list[str] | None = None) -> None:
    """``python -m autovision.serving.explainer MODEL``: the explainer container of a ModelDeployment."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a run or model directory: storage key, URI or path (as autovision serve takes)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--public-name", default="autovision", help="the name in /v1/models/NAME:explain")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD)
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, help="seconds per explanation")
    args = parser.parse_args(argv)
    settings = Settings()
    model = LoadedModel.from_location(locate_model(args.model, settings))
    config = ExplainerConfig(
        public_name=args.public_name,
        default_threshold=args.score_threshold,
        max_image_bytes=settings.max_image_bytes,
        max_image_pixels=settings.max_image_pixels,
        body_timeout_s=settings.gateway_body_timeout_seconds,
        time_limit_s=args.time_limit,
    )
    web.run_app(create_explainer_app(model, config), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
