"""The console's page (``static/``) in real headless Chromium, driven by Playwright, against ``autovision console``.

Skips where no Chromium or no Playwright is installed (CI has neither): install Debian's
``chromium`` (``apt-get install chromium``); Playwright drives that executable and never
downloads a browser. Every request any page makes is recorded, and the last test checks
that none left the console's origin and that every answer carried the Content-Security-Policy.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autovision.console.app import CSP
from autovision.contract import env
from autovision.contract.files import ModelCard
from tests.support.console import DATASET, RUN, World, write_world
from tests.support.datasets import labelled, write_zip
from tests.support.served import Served, serve_endpoints, write_run
from tests.support.serving import LABELS as SERVED_LABELS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLOWERS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flowers.zip"
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = [
    pytest.mark.chromium,
    pytest.mark.tritonserver,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)"),
]
# Importing flowers.zip and a tiny search take minutes on 2 shared cores.
SLOW_S = 600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model_card: ModelCard) -> World:
    return write_world(tmp_path_factory.mktemp("console-page"), model_card)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, model_card: ModelCard) -> Iterator[str]:
    """``autovision serve`` on a tiny ONNX classifier: the deployment the Deploy page tests."""
    run = write_run(tmp_path_factory.mktemp("served"), model_card)
    with Served(run.storage.uri("runs/local/serve/u1")) as served:
        served.wait_until_ready()
        yield serve_endpoints(served).gateway


@pytest.fixture(scope="module")
def console_url(world: World, gateway: str) -> Iterator[str]:
    """``autovision console`` on the world's storage, with the served model as deployment ``served``."""
    port = free_port()
    environment = os.environ | {env.STORAGE_ROOT: world.storage.uri("")}
    command = [sys.executable, "-m", "autovision", "console", f"--port={port}", f"--deployment=served={gateway}"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("autovision console did not start")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=30)


class Traffic:
    """Every request and response the pages made."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.responses: list[tuple[str, str | None]] = []
        self.errors: list[str] = []


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, traffic: Traffic, console_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.on("request", lambda request: traffic.requests.append(request.url))
    opened.on(
        "response",
        lambda response: traffic.responses.append((response.url, response.headers.get("content-security-policy"))),
    )
    opened.on("pageerror", lambda error: traffic.errors.append(str(error)))
    opened.goto(console_url)
    yield opened
    context.close()


def test_import_a_zip_and_browse_its_images(page: Any, console_url: str, tmp_path: Path) -> None:
    source = FLOWERS if FLOWERS.exists() else write_zip(tmp_path / "generated.zip", labelled(12, ["cat", "dog"]))
    page.goto(f"{console_url}/#/import")
    page.fill("#import-name", "flowers")
    page.set_input_files("#import-file", str(source))
    page.click("#import-submit")
    page.wait_for_selector("#import-message a", timeout=SLOW_S * 1000)
    page.click("#import-message a")
    page.wait_for_selector("#grid .tile img")
    assert page.locator("table").first.locator("tbody tr").count() >= 2  # a row per label
    images = page.locator("#grid .tile img")
    page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every((i) => i.complete)")
    assert page.evaluate("() => document.querySelector('#grid img').naturalWidth") > 0
    assert images.count() >= 2
    if int(page.inner_text("#page-status").rsplit(" ", 1)[-1]) > images.count():
        page.click("#next-page")
        page.wait_for_function("() => document.querySelector('#page-status').textContent.startsWith('61')")


def test_dataset_filters_show_rejects_and_conflicts(page: Any, console_url: str, world: World) -> None:
    page.goto(f"{console_url}/#/datasets/local/{DATASET}/{world.version}")
    page.wait_for_selector("#grid .tile")
    page.select_option("#filter", "rejected")
    page.wait_for_selector("#grid .tile >> text=not_an_image")
    page.select_option("#filter", "conflicting")
    page.wait_for_selector("#grid .tile >> text=labelled cat, dog")


def test_a_tiny_search_runs_and_shows_its_chosen_model(page: Any, console_url: str) -> None:
    page.goto(f"{console_url}/#/runs")
    page.select_option("#train-dataset", f"local/{DATASET}")
    page.fill("#train-budget", "3")
    page.click("#train-submit")
    page.wait_for_url("**/#/runs/local/**")
    page.wait_for_selector("#chosen, #run p.error", timeout=SLOW_S * 1000)
    assert page.locator("#run p.error").count() == 0, page.inner_text("#run p.error")
    assert page.locator("#run table tbody tr").count() >= 1


def per_label_text(page: Any) -> str:
    return str(page.inner_text("#per-label"))


def test_the_threshold_slider_recomputes_the_metrics_in_the_page(page: Any, console_url: str, traffic: Traffic) -> None:
    page.goto(f"{console_url}/#/evaluate/local/{RUN.job}/{RUN.uid}")
    page.wait_for_selector("#per-label table")
    page.wait_for_load_state("networkidle")
    before, requests = per_label_text(page), len(traffic.requests)
    page.fill("#threshold", "0.9")
    page.wait_for_function("() => document.querySelector('#threshold-value').textContent === '0.90'")
    assert per_label_text(page) != before
    assert len(traffic.requests) == requests  # recomputed in the page: no round trip


def test_the_evaluate_page_shows_heatmaps_and_the_exported_formats(page: Any, console_url: str) -> None:
    page.goto(f"{console_url}/#/evaluate/local/{RUN.job}/{RUN.uid}")
    page.wait_for_selector("#explained .tile .heat")
    assert page.locator("#explained .heat > div").count() == 4, "the 2x2 attribution grid over the image"
    page.wait_for_function("() => document.querySelector('#explained img').complete")
    assert page.evaluate("() => document.querySelector('#explained img').naturalWidth") > 0
    assert page.locator("#formats tbody tr").count() == 2
    assert "not checked" in page.inner_text("#formats")


def test_a_confusion_matrix_cell_opens_its_images(page: Any, console_url: str) -> None:
    page.goto(f"{console_url}/#/evaluate/local/{RUN.job}/{RUN.uid}")
    cell = page.locator("#confusion td.cell[data-row='0'][data-col='1']")
    count = int(cell.inner_text())
    cell.click()
    assert page.inner_text("#cell-title").startswith(f"True cat, predicted dog: {count} image")
    assert page.locator("#cell-images .tile").count() == count


def test_an_image_dropped_on_test_and_use_gets_its_label(page: Any, console_url: str, tmp_path: Path) -> None:
    image = tmp_path / "flower.png"
    image.write_bytes(labelled(1, ["x"])["x/0.png"])
    page.goto(f"{console_url}/#/deploy")
    page.wait_for_selector("text=ready")
    page.set_input_files("#test-image", str(image))
    page.wait_for_selector("#prediction .label")
    assert page.inner_text("#prediction .label >> nth=0") in SERVED_LABELS
    assert "curl" in page.inner_text("#curl")


def test_no_page_reaches_outside_its_origin_and_every_answer_carries_the_csp(
    page: Any, console_url: str, traffic: Traffic
) -> None:
    for route in ("#/datasets", "#/runs", "#/deploy", "#/import", f"#/evaluate/local/{RUN.job}/{RUN.uid}"):
        page.goto(f"{console_url}/{route}")
        page.wait_for_load_state("networkidle")
    assert traffic.requests
    foreign = [url for url in traffic.requests if not url.startswith((console_url, "blob:", "data:"))]
    assert foreign == []
    unprotected = [url for url, csp in traffic.responses if url.startswith(console_url) and csp != CSP]
    assert unprotected == []
    assert traffic.errors == []
