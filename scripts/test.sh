#!/usr/bin/env bash
# The README's second command: install into .venv with test tools and the edge extra,
# and ExecuTorch into .venv-executorch, then lint, type-check and test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev,edge
bash scripts/setup-executorch.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
