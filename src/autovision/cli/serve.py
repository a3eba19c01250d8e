"""``autovision serve``: a finished run served in the foreground, the local counterpart of a ModelDeployment."""

from __future__ import annotations

import dataclasses
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from autovision.cli._console import ModelArgument, console, errors, fail
from autovision.contract import env

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from aiohttp import web

    from autovision.export.layout import ModelLocation
    from autovision.serving import LocalTritonServer
    from autovision.serving.gateway import GatewayConfig
    from autovision.settings import Settings
    from autovision.storage import Storage

app = typer.Typer()


class TritonWatchdog:
    """Stops ``serve`` when tritonserver dies, rather than leaving a gateway that answers only 502s.

    A supervisor (systemd, a container runtime) then sees the failure and can restart it.
    """

    def __init__(self, triton: LocalTritonServer) -> None:
        self.serving = True
        self.exit_code: int | None = None
        threading.Thread(target=self._watch, args=(triton,), name="triton-watchdog", daemon=True).start()

    def _watch(self, triton: LocalTritonServer) -> None:
        code = triton.wait()
        if self.serving:
            self.exit_code = code
            os.kill(os.getpid(), signal.SIGTERM)


def repository_storage(location: ModelLocation) -> Storage:
    """The run's local Triton repository, where its model card says it is (as a ModelDeployment finds it)."""
    from autovision.contract.keys import MODEL_CARD
    from autovision.export.layout import ModelNotFoundError
    from autovision.storage import Storage

    uri = location.card().artifacts.get("tritonRepository")
    if not uri:
        raise ModelNotFoundError(f"{location.uri(MODEL_CARD)} names no artifacts.tritonRepository")
    return Storage(uri, location.storage.settings)


def explainer_beside(
    location: ModelLocation, config: GatewayConfig, host: str, port: int
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The run's explainer on ``port``, as a cleanup context that runs it beside the gateway."""
    from autovision.serving.explainer import ExplainerConfig, LoadedModel, create_explainer_app, serving_beside

    settings = location.storage.settings
    explainer = create_explainer_app(
        LoadedModel.from_location(location),
        ExplainerConfig(
            public_name=config.public_name,
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
        ),
    )
    return serving_beside(explainer, host, port)


def logging_settings(settings: Settings, log_rate: float | None, log_images: bool) -> Settings:
    """The settings with serve's prediction-log options over the environment's (a rate given, or images asked for)."""
    update: dict[str, object] = {}
    if log_rate is not None:
        update["gateway_log_rate"] = log_rate
    if log_images:
        update["gateway_log_images"] = True
    return settings.model_copy(update=update)


@app.command(name="serve")
def serve_command(
    model: ModelArgument,
    *,
    http_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Triton's KServe v2 HTTP port; default: a free one.")
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Triton's KServe v2 gRPC port; default: a free one.")
    ] = None,
    gateway_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The AutoML JSON gateway's port; default: a free one.")
    ] = None,
    gateway_grpc_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Google's PredictionService over gRPC (AutoML, Vertex AI); default: free."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address every endpoint listens on.")] = "127.0.0.1",
    explain: Annotated[
        bool, typer.Option("--explain", help="Also start the explainer: :explain answers with heatmaps.")
    ] = False,
    explain_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="The explainer's own port; default: a free one.")
    ] = None,
    log_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Log this fraction of prediction requests (0 to 1) under predictions/local/autovision/ in "
            f"{env.STORAGE_ROOT}; default: {env.GATEWAY_LOG_RATE}, else none.",
        ),
    ] = None,
    log_images: Annotated[
        bool, typer.Option("--log-images", help="Also store each logged request's image (for a review set).")
    ] = False,
) -> None:
    """Serve a finished run with tritonserver and the AutoML JSON gateway until Ctrl-C or SIGTERM; with
    ``--explain``, the explainer too (the run's TorchScript), reached through the gateway's :explain; with
    ``--log-rate``, a sample of the predictions is logged to storage (docs/monitoring.md)."""
    from aiohttp import web

    from autovision.export.layout import ModelNotFoundError, locate_model
    from autovision.serving import LocalTritonServer, TritonServerError
    from autovision.serving.gateway import GatewayConfig, create_app
    from autovision.serving.repository import RepositoryError, download_repository
    from autovision.serving.tritonserver import endpoint, free_ports
    from autovision.storage import Storage, StorageError

    # Until the gateway takes over signal handling, SIGTERM unwinds like Ctrl-C, so tritonserver
    # (in its own session, out of reach of signals sent to us) is never left behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        location = locate_model(model)
        with tempfile.TemporaryDirectory(prefix="autovision-serve-") as work:
            repository = download_repository(repository_storage(location), "", Path(work) / "repository")
            with LocalTritonServer(
                repository, work_dir=Path(work) / "triton", host=host, http_port=http_port, grpc_port=grpc_port
            ) as triton:
                spare = free_ports(3)  # distinct, unlike several free_port() calls
                port, google_grpc_port = gateway_port or spare[0], gateway_grpc_port or spare[1]
                listen = f"[{host}]" if ":" in host else host
                config = GatewayConfig.from_settings(
                    triton.http_url,
                    logging_settings(location.storage.settings, log_rate, log_images),
                    grpc_address=f"{listen}:{google_grpc_port}",
                )
                google_paths = f"http://{endpoint(host, port)}/v1/projects/-/locations/-"
                endpoints = [
                    f"serving {location.uri()}",
                    f"KServe v2 HTTP  http://{triton.http_url}/v2/models/{config.model_name}/infer",
                    f"KServe v2 gRPC  {triton.grpc_url} (model {config.model_name})",
                    f"AutoML JSON     POST http://{endpoint(host, port)}/v1/models/{config.public_name}:predict",
                    f"AutoML v1       POST {google_paths}/models/{config.public_name}:predict",
                    f"Vertex AI       POST {google_paths}/endpoints/{config.public_name}:predict",
                    f"Google gRPC     {endpoint(host, google_grpc_port)} (AutoML v1 and Vertex AI PredictionService)",
                ]
                if config.logging is not None:
                    where = Storage.from_settings(config.logging.storage).uri(config.logging.prefix)
                    endpoints.append(f"Prediction log  {config.logging.rate * 100:g} % of requests to {where}")
                explainer_port = explain_port or spare[2]
                if explain:
                    config = dataclasses.replace(config, explainer_url=f"http://{endpoint(host, explainer_port)}")
                app = create_app(config)
                if explain:
                    app.cleanup_ctx.append(explainer_beside(location, config, host, explainer_port))
                    endpoints.append(
                        f"Explanations    POST http://{endpoint(host, port)}/v1/models/{config.public_name}:explain"
                    )
                console.print("\n".join(endpoints), soft_wrap=True)
                watchdog = TritonWatchdog(triton)
                # Returns once SIGINT or SIGTERM has stopped the gateway (the watchdog sends SIGTERM
                # when tritonserver dies); leaving the block stops Triton.
                web.run_app(
                    app,
                    host=host,
                    port=port,
                    print=lambda _banner: console.print("ready: press Ctrl-C to stop"),
                )
                watchdog.serving = False
                if watchdog.exit_code is not None:
                    raise TritonServerError(f"tritonserver exited with code {watchdog.exit_code}; stopped serving")
    except KeyboardInterrupt:
        errors.print("interrupted")
        raise typer.Exit(code=130) from None
    except (ModelNotFoundError, RepositoryError, StorageError, TritonServerError, OSError) as error:
        fail(str(error))
    console.print("stopped")
