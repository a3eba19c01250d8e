"""``autovision console``: the web console on the local runtime, over local storage and local gateways."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from autovision.cli._console import console, fail

app = typer.Typer()

DEFAULT_PORT = 8750


def parse_deployments(values: list[str]) -> dict[str, str]:
    """``NAME=URL`` pairs (a local ``serve`` gateway each) as a mapping, or ValueError naming the bad one."""
    from autovision.console.source import checked_name

    deployments: dict[str, str] = {}
    for value in values:
        name, separator, url = value.partition("=")
        if not separator or not url.startswith(("http://", "https://")):
            raise ValueError(f"--deployment {value!r}: want NAME=http://HOST:PORT (the gateway `serve` printed)")
        deployments[checked_name(name, "deployment name")] = url
    return deployments


@app.command(name="console")
def console_command(
    *,
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default serves this machine only (there is no login).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    deployment: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=URL",
            help="A running `autovision serve` gateway to list and test on the Deploy page. Repeatable.",
        ),
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(min=1, help="Largest dataset zip the import form accepts, MiB.")] = 1024,
) -> None:
    """Open AutoVision's web console: datasets, training, evaluation and deployments, in a browser."""
    from aiohttp import web

    from autovision.console.app import ConsoleConfig, build_console_app
    from autovision.console.local import LocalSource
    from autovision.storage import Storage, StorageError

    try:
        deployments = parse_deployments(deployment or [])
        storage = Storage.from_settings()
    except (ValueError, StorageError) as error:
        fail(str(error))
    with tempfile.TemporaryDirectory(prefix="autovision-console-") as work:
        source = LocalSource(storage, Path(work), deployments)
        config = ConsoleConfig(max_upload_bytes=max_upload_mb * 1024 * 1024, upload_dir=Path(work) / "uploads")
        app = build_console_app(source, config=config)
        listen = f"[{host}]" if ":" in host else host
        try:
            web.run_app(
                app,
                host=host,
                port=port,
                print=lambda _banner: console.print(f"console at http://{listen}:{port}/ (storage {storage.uri('')})"),
            )
        finally:
            source.stop_children()
