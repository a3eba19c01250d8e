#!/usr/bin/env bash
# Create .venv-executorch: ExecuTorch and the project's pinned torch, nothing else.
# ExecuTorch needs numpy 2 and the project's .venv keeps numpy below 2 (tritonserver),
# so autovision.export.executorch_export runs this venv's Python as a subprocess (docs/edge.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/uv.sh
echo "Installing ExecuTorch into .venv-executorch ..."
[ -x .venv-executorch/bin/python ] || python3 -m venv .venv-executorch
ensure_uv .venv-executorch
# executorch does not declare torch; install the pinned CPU build beside it.
uv_install .venv-executorch -c scripts/constraints.txt "torch" "executorch>=1.5,<1.6"
.venv-executorch/bin/python -c "import executorch.runtime"
