# Sourced by the set-up scripts: uv, the installer they use, and how they call it.
# uv reads neither pip's configuration nor its find-links, so the wheel folders pip
# is configured with (where this project's machines keep the torch CPU build) are
# passed on; without them a pinned torch comes from PyPI as pip would take it.

# Put uv (the PyPI package, pinned in scripts/constraints.txt) into VENV with pip (seconds).
ensure_uv() {
  local venv="$1"
  [ -x "${venv}/bin/uv" ] || "${venv}/bin/python" -m pip install --quiet -c scripts/constraints.txt uv 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
}

# uv pip install ARGS... into VENV with VENV's uv, and pip's configured find-links.
uv_install() {
  local venv="$1"
  shift
  local find_links="${PIP_FIND_LINKS:-$("${venv}/bin/python" -m pip config get global.find-links 2>/dev/null || true)}"
  local args=()
  for folder in ${find_links}; do
    args+=(--find-links "${folder}")
  done
  "${venv}/bin/uv" pip install --quiet --python "${venv}/bin/python" "${args[@]}" "$@"
}
