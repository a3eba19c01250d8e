"""Time to first paint of the console's dataset page, and a screenshot of every page.

Starts ``autovision console`` on ``AUTOVISION_STORAGE_ROOT`` and opens its pages in
headless Chromium (Debian's ``chromium``, driven by Playwright). For the dataset
page it reports, from navigation start: first contentful paint, the first page of
the grid shown (tiles in the DOM), and every image of that page decoded; cold (the
console's first read of the version's index) and warm (the index in memory)::

    AUTOVISION_STORAGE_ROOT=file:///path/storage python benchmarks/console_pages.py \\
        --dataset cifar10 --label cat --run local/quickstart/<uid> --screenshots docs/images

The figures go in docs/benchmarks.md with the machine and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import cpu_model

GRID_SHOWN = "() => document.querySelectorAll('#grid .tile').length > 0"
IMAGES_DECODED = (
    "() => { const images = [...document.querySelectorAll('#grid img')];"
    " return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0); }"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_console(port: int, deployments: list[str]) -> subprocess.Popen[bytes]:
    """``autovision console`` on this environment's storage; returns once it accepts connections."""
    command = [sys.executable, "-m", "autovision", "console", f"--port={port}"]
    command += [f"--deployment={deployment}" for deployment in deployments]
    process = subprocess.Popen(command, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("autovision console did not start in 60 s")


def timed_visit(page: Any, url: str) -> dict[str, float]:
    """Open ``url`` in a fresh navigation; milliseconds from navigation start to paint, grid, decoded images."""
    page.goto("about:blank")
    page.goto(url)
    page.wait_for_function(GRID_SHOWN, timeout=120_000)
    grid_ms = page.evaluate("() => performance.now()")
    page.wait_for_function(IMAGES_DECODED, timeout=120_000)
    images_ms = page.evaluate("() => performance.now()")
    paint = page.evaluate(
        "() => performance.getEntriesByName('first-contentful-paint').map((entry) => entry.startTime)[0] ?? null"
    )
    return {
        "firstContentfulPaintMs": round(paint, 1),
        "gridShownMs": round(grid_ms, 1),
        "imagesDecodedMs": round(images_ms, 1),
    }


def screenshots(page: Any, base: str, folder: Path, run: str | None, deployed: bool) -> None:
    """A PNG of every page: the dataset page as it is now, then the others."""
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "console-dataset.png"))
    # Each page with what shows it has loaded (a hash route changes the page without a load event).
    shots = {"console-datasets.png": ("#/datasets", "main table"), "console-import.png": ("#/import", "#import-form")}
    if run:
        shots["console-training.png"] = (f"#/runs/{run}", "#run table")
        shots["console-evaluate.png"] = (f"#/evaluate/{run}", "#confusion")
    if deployed:
        shots["console-deploy.png"] = ("#/deploy", "#snippets pre")
    for name, (route, loaded) in shots.items():
        page.goto(f"{base}/{route}")
        page.wait_for_selector(loaded, timeout=60_000)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(folder / name), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="A local dataset name (its latest version is opened).")
    parser.add_argument("--label", help="Open the grid of this label (the first page of one label).")
    parser.add_argument("--run", help="namespace/job/uid of a finished run, for the Training and Evaluate shots.")
    parser.add_argument("--deployment", action="append", default=[], help="NAME=URL, as `autovision console` takes.")
    parser.add_argument("--screenshots", type=Path, help="Folder for a PNG of every page.")
    parser.add_argument("--repeats", type=int, default=3, help="Warm visits to time.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium installed (apt-get install chromium)")
    storage = os.environ["AUTOVISION_STORAGE_ROOT"].removeprefix("file://")
    version = json.loads((Path(storage) / "datasets" / args.dataset / "latest.json").read_text())["version"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    console = start_console(port, args.deployment)
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            url = f"{base}/#/datasets/local/{args.dataset}/{version}"
            cold = timed_visit(page, url)
            warm = [timed_visit(page, url) for _ in range(args.repeats)]
            label = None
            if args.label:
                page.click(f"#main .chip[data-label='{args.label}']")
                started = time.perf_counter()
                captions = "[...document.querySelectorAll('#grid .tile .caption:not(.muted)')]"
                page.wait_for_function(f"() => {captions}.every((c) => c.textContent === {json.dumps(args.label)})")
                page.wait_for_function(IMAGES_DECODED)
                label = round((time.perf_counter() - started) * 1000, 1)
            if args.screenshots:
                screenshots(page, base, args.screenshots, args.run, bool(args.deployment))
            browser.close()
    finally:
        console.terminate()
        console.wait(timeout=30)
    result = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "load": os.getloadavg(),
        "dataset": args.dataset,
        "version": version,
        "cold": cold,
        "warm": warm,
        "labelGridMs": label,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
