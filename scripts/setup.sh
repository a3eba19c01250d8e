#!/usr/bin/env bash
# Create .venv in the repo root and install AutoVision into it.
# Usage: scripts/setup.sh [EXTRAS]   (default: local; the tests use dev,edge)
# uv does the install: with its cache (~/.cache/uv) warm it links wheels instead of
# unpacking them, and resolves in seconds where pip took minutes (docs/edge.md, "CI").
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local}"
source scripts/uv.sh

echo "Installing AutoVision into .venv ..."
[ -x .venv/bin/python ] || python3 -m venv .venv
ensure_uv .venv
# torch is pinned to its CPU build through scripts/constraints.txt; scripts/overrides.txt
# lifts one dependency's cap that would otherwise pull the dev tools back (it says which).
uv_install .venv -c scripts/constraints.txt --override scripts/overrides.txt -e ".[${extras}]"
.venv/bin/python -c "import autovision"
