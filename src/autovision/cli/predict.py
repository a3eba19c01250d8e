"""``autovision predict``: ask a Triton endpoint about one image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from autovision.cli._console import console, fail

app = typer.Typer()


@app.command(name="predict")
def predict_command(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Encoded image (JPEG, PNG, ...).")],
    endpoint: Annotated[str, typer.Option(help="Triton endpoint host:port.")] = "127.0.0.1:8000",
    protocol: Annotated[str, typer.Option(help="http or grpc.")] = "http",
    model: Annotated[str, typer.Option(help="Model name in the repository.")] = "autovision",
    top_k: Annotated[int, typer.Option(min=1, help="Labels to return.")] = 3,
) -> None:
    """Ask a Triton endpoint for the top-k labels of one image."""
    from autovision.serving import PredictionError, predict

    if protocol not in ("http", "grpc"):
        fail("--protocol must be http or grpc")
    chosen: Literal["http", "grpc"] = "grpc" if protocol == "grpc" else "http"
    try:
        predictions = predict(image.read_bytes(), endpoint, protocol=chosen, model_name=model, top_k=top_k)
    except PredictionError as error:
        fail(str(error))
    for prediction in predictions:
        console.print(f"{prediction.label}\t{prediction.score:.4f}")
