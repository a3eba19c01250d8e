#!/usr/bin/env bash
# The README's first command: install into .venv, then run the whole local path.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh local
exec .venv/bin/autovision quickstart "$@"
