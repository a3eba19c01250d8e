#!/usr/bin/env bash
# Create .venv-executorch: ExecuTorch and the project's pinned torch, nothing else.
# ExecuTorch needs numpy 2 and the project's .venv keeps numpy below 2 (tritonserver),
# so autovision.export.executorch_export runs this venv's Python as a subprocess (docs/edge.md).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "Installing ExecuTorch into .venv-executorch (first time: several minutes) ..."
[ -x .venv-executorch/bin/python ] || python3 -m venv .venv-executorch
# executorch does not declare torch; install the pinned CPU build beside it.
.venv-executorch/bin/python -m pip install --quiet -c scripts/constraints.txt "torch" "executorch>=1.5,<1.6" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
.venv-executorch/bin/python -c "import executorch.runtime"
