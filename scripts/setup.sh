#!/usr/bin/env bash
# Create .venv in the repo root and install AutoVision into it.
# Usage: scripts/setup.sh [EXTRAS]   (default: local; the tests use dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local}"

# pip's output minus the noise of index locations this machine does not have;
# pipefail keeps pip's own exit status.
pip_install() {
  .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
}

echo "Installing AutoVision into .venv (first time: a few minutes) ..."
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch is pinned to its CPU build through scripts/constraints.txt.
pip_install -c scripts/constraints.txt -e ".[${extras}]"
.venv/bin/python -c "import autovision"
