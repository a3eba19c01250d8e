"""report.html: self-contained, and rendered by a real headless Chromium when one is installed."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from autovision.evaluate import SplitPredictions, evaluate_predictions, softmax
from autovision.report import MICRO_COLOUR, render_report, thumbnail_data_uri

LABELS = ["cat", "dog", "<fox & co>"]


def png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def evaluation() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    targets = np.arange(60) % 3
    logits = rng.normal(0.0, 1.0, size=(60, 3)).astype(np.float32)
    logits[np.arange(60), targets] += 2.5
    uris = [f"s3://bucket/images/{i}.png" for i in range(60)]
    return evaluate_predictions(SplitPredictions.single_label(LABELS, uris, targets, softmax(logits)))


@pytest.fixture(scope="module")
def page(evaluation: dict[str, Any]) -> str:
    first_mistake = evaluation["mostConfidentMistakes"][0]["uri"]
    thumbnail = thumbnail_data_uri(png((8, 8), (200, 30, 30)))
    assert thumbnail is not None
    return render_report(
        evaluation, title="pets <v1>", facts=[("dataset", "pets v1")], thumbnails={first_mistake: thumbnail}
    )


class Collector(HTMLParser):
    """Every tag and its attributes, to check what the page would fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_fetches_nothing(page: str) -> None:
    parser = Collector()
    parser.feed(page)
    tags = [tag for tag, _ in parser.tags]

    assert "script" not in tags
    assert "link" not in tags
    assert "iframe" not in tags
    for _, attributes in parser.tags:
        for name in ("src", "href"):
            value = attributes.get(name)
            assert value is None or value.startswith("data:image/png;base64,"), value
    assert not re.search(r"url\(|@import", page), "no CSS that fetches"


def test_report_shows_every_section(page: str, evaluation: dict[str, Any]) -> None:
    for heading in ("Metrics", "Confusion matrix", "Precision-recall curves", "Score threshold", "Per label"):
        assert f"<h2>{heading}" in page
    assert page.count('<svg id="confusion-matrix"') == 1
    assert page.count("<rect x=") >= 9, "one heatmap cell per (true, predicted) pair"
    assert 'id="pr-micro"' in page
    assert all(f'id="pr-label-{i}"' in page for i in range(3))
    assert page.count('<tr class="chosen">') == 1, "the 0.50 row of the threshold table is highlighted"
    assert page.count('class="mistake"') == len(evaluation["mostConfidentMistakes"])
    assert page.count("<img ") == 1
    assert "no preview" in page


def test_report_escapes_names(page: str) -> None:
    assert "<fox & co>" not in page
    assert "&lt;fox &amp; co&gt;" in page
    assert "<title>pets &lt;v1&gt;</title>" in page


def test_thumbnails_enlarge_tiny_images_and_skip_broken_ones() -> None:
    uri = thumbnail_data_uri(png((8, 4), (0, 0, 0)), size=96)
    assert uri is not None
    decoded = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert decoded.size == (96, 48)
    assert thumbnail_data_uri(b"not an image") is None


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def pixels_of(image: Image.Image, colour: tuple[int, int, int]) -> int:
    array = np.asarray(image.convert("RGB"))
    return int((array == np.array(colour, dtype=np.uint8)).all(axis=-1).sum())


def dark_blue_pixels(image: Image.Image) -> int:
    red, _, blue = np.asarray(image.convert("RGB")).astype(int).transpose(2, 0, 1)
    return int(((red < 90) & (blue > red + 60)).sum())


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_headless_chromium_draws_the_confusion_matrix_and_pr_curves(page: str, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    screenshot = tmp_path / "report.png"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,1600",
        f"--screenshot={screenshot}",
        report.as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)

    image = Image.open(screenshot)
    assert image.size == (1280, 1600)
    # The diagonal cells of a good classifier are dark blue (three cells of 44 x 44 pixels)...
    assert dark_blue_pixels(image) > 3000
    # ...and the micro-average PR curve is a thick red line.
    red = (int(MICRO_COLOUR[1:3], 16), int(MICRO_COLOUR[3:5], 16), int(MICRO_COLOUR[5:7], 16))
    assert pixels_of(image, red) > 300


def test_report_shows_heatmaps_of_mistakes_and_correct_images_with_their_method(evaluation: dict[str, Any]) -> None:
    mistake = evaluation["mostConfidentMistakes"][0]
    explained: dict[str, Any] = {
        "method": "grad_cam",
        "settings": {"method": "grad_cam", "grid": 8},
        "images": [
            {"uri": mistake["uri"], "kind": "mistake", "label": mistake["predictedLabel"], "score": 0.9, "grid": []},
            {"uri": "s3://bucket/images/ok.png", "kind": "correct", "label": "<fox & co>", "score": 0.8, "grid": []},
        ],
    }
    overlay = thumbnail_data_uri(png((8, 8), (250, 250, 0)))
    assert overlay is not None
    page = render_report(
        evaluation | {"explanations": explained},
        title="pets",
        overlays={image["uri"]: overlay for image in explained["images"]},
    )
    assert page.count('class="heatmap"') == 2
    assert "<h2>Where the model looked</h2>" in page
    assert "Heatmaps (grad_cam, grid 8)" in page
    assert "label: <b>&lt;fox &amp; co&gt;</b>" in page
    assert "Where the model looked" not in render_report(evaluation, title="pets")


def test_report_tables_each_format_and_says_which_were_not_run(evaluation: dict[str, Any]) -> None:
    latency = {"median": 1.234, "p90": 2.5, "runs": 50}
    formats = [
        {"format": "onnx", "file": "model.onnx", "bytes": 2_500_000, "predictionsChecked": True, "latencyMs": latency,
         "top1": 0.9, "top1Agreement": 1.0},
        {"format": "coreml", "file": "model.mlpackage", "bytes": 1_000_000, "predictionsChecked": False,
         "latencyMs": None, "top1": None, "top1Agreement": None},
    ]  # fmt: skip
    page = render_report(evaluation | {"formats": formats}, title="pets")
    table = page[page.index('<div id="formats">') :]
    assert "<td>onnx</td><td>model.onnx</td><td>2.50</td><td>1.23</td><td>2.50</td><td>0.9000</td><td>1.0000</td>" in (
        table
    )
    assert "<td>coreml</td><td>model.mlpackage</td><td>1.00</td><td>not run here</td>" in table
    assert "50 timed runs" in table
    assert "Exported formats" not in render_report(evaluation, title="pets")
