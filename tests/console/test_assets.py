"""The page's assets: the vendored npm files match frontend/package-lock.json, and nothing needs the network.

The built files are committed (frontend/vendor.mjs copies them out of node_modules) so that a
Python install, CI and an air-gapped cluster need no Node.js; these tests fail when a copy drifts
from the lock file or from what ``npm ci`` installs (checked where frontend/node_modules exists).
"""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from autovision.console.app import static_assets

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "frontend"
STATIC = ROOT / "src" / "autovision" / "console" / "static"
VENDOR = STATIC / "vendor"
MANIFEST = json.loads((VENDOR / "vendor.json").read_text())


def test_the_manifest_lists_every_vendored_file_with_its_hash() -> None:
    assert {path.name for path in VENDOR.iterdir()} - {"vendor.json"} == set(MANIFEST)
    for name, entry in MANIFEST.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == entry["sha256"], name


def test_vendored_versions_are_the_locked_ones() -> None:
    lock = json.loads((FRONTEND / "package-lock.json").read_text())
    pins = json.loads((FRONTEND / "package.json").read_text())["dependencies"]
    for name, entry in MANIFEST.items():
        package = entry["source"].split("/")[0]
        assert lock["packages"][f"node_modules/{package}"]["version"] == entry["version"] == pins[package], name


@pytest.mark.skipif(not (FRONTEND / "node_modules").exists(), reason="no frontend/node_modules: run `npm ci` there")
def test_vendored_files_equal_what_npm_ci_installs() -> None:
    for name, entry in MANIFEST.items():
        assert (VENDOR / name).read_bytes() == (FRONTEND / "node_modules" / entry["source"]).read_bytes(), (
            f"{name} drifted: run `npm ci && npm run vendor` in frontend/"
        )


class InlineFinder(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, style attributes, event handlers, remote URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and not values.get("src"):
            self.blocked.append("inline script")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.blocked.append(f"{tag} {name}")
            if name in ("src", "href") and value and re.match(r"^(https?:)?//", value):
                self.blocked.append(f"remote {value}")


def test_the_page_needs_nothing_a_strict_csp_blocks_and_nothing_remote() -> None:
    finder = InlineFinder()
    finder.feed((STATIC / "index.html").read_text())
    assert finder.blocked == []
    script = (STATIC / "console.js").read_text()
    assert ".innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert re.findall(r"https?://", script + (STATIC / "console.css").read_text()) == []


def test_the_package_serves_the_page_and_its_vendored_files() -> None:
    assets = static_assets()
    assert {"index.html", "console.js", "console.css", "vendor/uPlot.esm.js", "vendor/uPlot.min.css"} <= set(assets)
