#!/usr/bin/env bash
# Run the images built by scripts/build-images.sh (buildah storage) for real and
# check what the chart and the operator promise of them.
#
#   scripts/check-images.sh [--only operator|trainer] [--tag TAG]
#
# Each entry point runs from the image's root file system (buildah mount) bind-
# mounted READ-ONLY, as UID/GID 65532 (chroot --userspec), in a private mount
# namespace, with only the volumes the pods mount writable: /tmp (an emptyDir),
# /dev/shm (the trainer's memory emptyDir) and, for the folder-storage run, a
# bind-mounted host folder at /mnt/storage. The host network is shared, so the
# images talk to services on 127.0.0.1 started from the development .venv
# (scripts/image_check_services.py: KMock, the embedded SeaweedFS).
#
# operator image: no compiler, apt lists, pip/npm cache or torch; runs as 65532 on
#   a read-only root; against KMock it answers its liveness endpoint (and metrics);
#   pointed at an API server that is not there it exits non-zero within
#   NO_API_LIMIT_S seconds, saying why.
# trainer image: the same hygiene; writes the digits zip, imports it and trains a
#   tiny search (budget 2 milli-node-hours) and exports, with storage in a bind-
#   mounted folder and in the embedded SeaweedFS on 127.0.0.1; the gateway entry
#   point (`python -m autovision.serving.gateway`) starts and answers /healthz.
#
# Needs root, buildah, curl and the development .venv (bash scripts/setup.sh dev).
# Not part of the per-push tests.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
only=""
tag="0.1.0"
prefix=""
while (($#)); do
  case "$1" in
    --only) only=${2:?}; shift ;;
    --tag) tag=${2:?}; shift ;;
    --prefix) prefix=${2:?}; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "check-images.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

NO_API_LIMIT_S=90     # the operator's stated exit time without an API server
LIVENESS_LIMIT_S=60   # the chart's startupProbe allows 60 x 2 s
py=$repo/.venv/bin/python
[[ $(id -u) == 0 ]] || { echo "check-images.sh: needs root (buildah mount, chroot)" >&2; exit 1; }
[[ -x $py ]] || { echo "check-images.sh: no .venv: run bash scripts/setup.sh dev" >&2; exit 1; }

failures=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
step() { echo "==> [$(date -u +%H:%M:%S)] $*"; }

work=$(mktemp -d /var/tmp/autovision-check.XXXXXX)
services=()
cleanup() {
  local pid ctr
  for pid in "${services[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for ctr in autovision-check-operator autovision-check-trainer; do
    buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$py" -c 'from autovision.embedded_s3 import free_port; print(free_port())'; }

# mount_image IMAGE NAME: a working container of IMAGE, mounted; prints the mount point.
mount_image() {
  local ctr
  buildah rm "autovision-check-$2" >/dev/null 2>&1 || true
  ctr=$(buildah from --pull=never --name "autovision-check-$2" "$1")  # removed by cleanup, by name
  buildah mount "$ctr"
}

# image_env IMAGE: the image's own environment (ENV lines of the Dockerfile).
image_env() { buildah inspect --type image --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$1" | sed '/^$/d'; }

# run_ro MOUNT TMP STORAGE -- VAR=VALUE... COMMAND...: the entry point as a pod runs it.
# STORAGE is a host folder for /mnt/storage, or "-" for none.
run_ro() {
  local mnt=$1 tmp=$2 storage=$3
  shift 4
  # In the background (RUN_RO_EXEC=1 run_ro ... &) exec, so that $! is the entry
  # point itself (unshare, bash, chroot and env all exec) and a kill stops it.
  local exec=()
  [[ ${RUN_RO_EXEC:-} != 1 ]] || exec=(exec)
  "${exec[@]}" unshare --mount --propagation private -- /bin/bash -euc '
    mnt=$1 tmp=$2 storage=$3; shift 3
    root=$(mktemp -d /run/autovision-root.XXXXXX)
    mount --bind "$mnt" "$root"
    mount -o remount,bind,ro "$root"
    mount --bind "$tmp" "$root/tmp"
    mount -t proc proc "$root/proc"
    mount --bind /dev "$root/dev"
    mount -t tmpfs -o size=1g,mode=1777 shm "$root/dev/shm"
    [[ $storage == - ]] || mount --bind "$storage" "$root/mnt"  # the base has an empty /mnt
    exec chroot --userspec=65532:65532 "$root" /usr/bin/env -i "$@"
  ' run_ro "$mnt" "$tmp" "$storage" "$@"
}

hygiene() {  # hygiene MOUNT NAME
  local mnt=$1 name=$2 found
  found=$(find "$mnt" -xdev \( -name 'gcc' -o -name 'gcc-[0-9]*' -o -name 'cc' -o -name 'cc1' -o -name 'cc1plus' \
    -o -name 'x86_64-linux-gnu-gcc*' -o -name 'g++' -o -name 'clang' \) \( -type f -o -type l \) -perm /111 2>/dev/null | sed "s|^$mnt||")
  [[ -z $found ]] && pass "$name: no compiler (gcc, cc, cc1, g++, clang)" || fail "$name: compiler files: $found"
  found=$(find "$mnt/var/lib/apt/lists" -type f ! -name lock 2>/dev/null | sed "s|^$mnt||")
  [[ -z $found ]] && pass "$name: no apt lists" || fail "$name: apt lists: $(echo "$found" | head -3)"
  found=$(find "$mnt" -xdev -type d \( -path '*/.cache/pip' -o -name '.npm' -o -path '*/.cache/npm' -o -name '_cacache' \) 2>/dev/null | sed "s|^$mnt||")
  [[ -z $found ]] && pass "$name: no pip or npm cache" || fail "$name: caches: $found"
  found=$(find "$mnt/var/cache/apt/archives" -name '*.deb' 2>/dev/null | head -3)
  [[ -z $found ]] && pass "$name: no apt archives" || fail "$name: apt archives: $found"
  # build-images.sh with PIP_CERT bind-mounts these two for RUN steps; buildah 1.28
  # leaves empty files where the mount points were. Their content must not stay.
  if [[ -s $mnt/etc/pip.conf || -s $mnt/run/autovision-build-ca.crt ]]; then
    fail "$name: the build-time pip.conf or CA bundle is in the image"
  elif [[ -e $mnt/etc/pip.conf || -e $mnt/run/autovision-build-ca.crt ]]; then
    pass "$name: no build-time pip.conf or CA bundle (NOTE: empty mount-point files /etc/pip.conf, /run/autovision-build-ca.crt left by buildah -v)"
  else
    pass "$name: no build-time pip.conf or CA bundle"
  fi
}

identity() {  # identity MOUNT NAME ENV...
  local mnt=$1 name=$2 tmp out
  shift 2
  tmp=$(mktemp -d "$work/tmp-id.XXXXXX"); chmod 1777 "$tmp"
  out=$(run_ro "$mnt" "$tmp" - -- "$@" /bin/sh -c 'id -u; id -g; touch /probe 2>&1 || true; touch /tmp/probe && echo tmp-writable' 2>&1)
  if [[ $(sed -n 1p <<<"$out") == 65532 && $(sed -n 2p <<<"$out") == 65532 ]] && grep -q 'Read-only file system' <<<"$out" \
     && grep -q tmp-writable <<<"$out"; then
    pass "$name: runs as 65532:65532; / is read-only ($(grep 'Read-only' <<<"$out")); /tmp writable"
  else
    fail "$name: identity/read-only check: $out"
  fi
}

size_of() {  # size_of IMAGE MOUNT
  local size
  size=$(buildah images --format '{{.Size}}' "$1" | head -1)
  echo "SIZE: $1: $size (buildah), $(du -sh --apparent-size -x "$2" | cut -f1) (du --apparent-size of the root file system)"
}

wait_http() {  # wait_http URL SECONDS PID: prints the status and body once the URL answers
  local url=$1 limit=$2 pid=$3 t0=$SECONDS out
  while ((SECONDS - t0 < limit)); do
    if out=$(curl -s -m 5 -w ' HTTP %{http_code}' "$url" 2>/dev/null) && [[ $out != *"HTTP 000" ]]; then
      echo "$out after $((SECONDS - t0)) s"; return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "process exited"; return 1; }
    sleep 1
  done
  echo "no answer within $limit s"; return 1
}

check_operator() {
  local image=${prefix}autovision-operator:$tag mnt tmp envs=() port mport pid rc t0 out
  step "operator image $image"
  mnt=$(mount_image "$image" operator)
  hygiene "$mnt" operator
  found=$(find "$mnt/opt/autovision" -maxdepth 5 -type d \( -name torch -o -name nvidia -o -name torchvision \) | sed "s|^$mnt||")
  [[ -z $found ]] && pass "operator: no torch (or nvidia/torchvision) in /opt/autovision" || fail "operator: carries $found"
  mapfile -t envs < <(image_env "$image")
  identity "$mnt" operator "${envs[@]}"
  size_of "$image" "$mnt"

  # The chart's environment (deployment.yaml), with a kubeconfig instead of the service account.
  tmp=$(mktemp -d "$work/tmp-op.XXXXXX"); chmod 1777 "$tmp"
  port=$(free_port); mport=$(free_port)
  local chart_env=(POD_ID=autovision-operator-0 AUTOVISION_NAMESPACE=autovision-system AUTOVISION_WATCH_NAMESPACES=ml
    "AUTOVISION_LIVENESS_ENDPOINT=http://127.0.0.1:$port/healthz" "AUTOVISION_METRICS_PORT=$mport"
    AUTOVISION_STORAGE_ROOT=s3://autovision/root AUTOVISION_S3_ENDPOINT_URL=http://127.0.0.1:1
    AUTOVISION_TRAINER_IMAGE=${prefix}autovision-trainer:$tag AUTOVISION_TRAINER_IMAGE_PULL_POLICY=IfNotPresent
    AUTOVISION_IMAGE_PULL_SECRETS='[]' AUTOVISION_GPU_NODE_SELECTOR='{}' AUTOVISION_GPU_TOLERATIONS='[]'
    KUBECONFIG=/tmp/kubeconfig)

  step "operator against KMock on 127.0.0.1"
  "$py" scripts/image_check_services.py kmock "$tmp/kubeconfig" >"$work/kmock.log" 2>&1 &
  local kmock_pid=$!
  services+=("$kmock_pid")
  t0=$SECONDS; until [[ -s $tmp/kubeconfig ]] || ((SECONDS - t0 > 30)); do sleep 0.5; done
  chmod 644 "$tmp/kubeconfig"
  RUN_RO_EXEC=1 run_ro "$mnt" "$tmp" - -- "${envs[@]}" "${chart_env[@]}" autovision-operator >"$work/operator-kmock.log" 2>&1 &
  pid=$!
  services+=("$pid")
  if out=$(wait_http "http://127.0.0.1:$port/healthz" "$LIVENESS_LIMIT_S" "$pid"); then
    pass "operator: liveness http://127.0.0.1:$port/healthz answered: $out"
  else
    fail "operator: liveness: $out"; tail -20 "$work/operator-kmock.log"
  fi
  if out=$(curl -s -m 5 "http://127.0.0.1:$mport/metrics" | grep -c '^autovision_\|^python_info'); then
    pass "operator: metrics on :$mport answered ($out autovision_/python_info lines)"
  else
    fail "operator: metrics port $mport did not answer"
  fi
  grep -E 'kopf|Activity|ERROR' "$work/operator-kmock.log" | head -8 || true
  t0=$SECONDS
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null && rc=0 || rc=$?
  echo "    operator stopped $((SECONDS - t0)) s after SIGTERM, status $rc; last log line: $(tail -1 "$work/operator-kmock.log" | cut -c1-160)"
  kill "$kmock_pid"; wait "$kmock_pid" 2>/dev/null || true

  step "operator with no API server (kubeconfig pointing at a closed port on 127.0.0.1)"
  local dead; dead=$(free_port)
  cat >"$tmp/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:$dead"}}]
users: [{name: operator, user: {token: t}}]
contexts: [{name: none, context: {cluster: none, user: operator}}]
current-context: none
EOF
  t0=$SECONDS
  timeout $((NO_API_LIMIT_S + 30)) bash -c "$(declare -f run_ro); RUN_RO_EXEC=1 run_ro \"\$@\"" run_ro "$mnt" "$tmp" - -- "${envs[@]}" "${chart_env[@]}" \
    "AUTOVISION_LIVENESS_ENDPOINT=http://127.0.0.1:$(free_port)/healthz" "AUTOVISION_METRICS_PORT=$(free_port)" \
    autovision-operator >"$work/operator-noapi.log" 2>&1 && rc=0 || rc=$?
  local took=$((SECONDS - t0)) why
  why=$(grep -m1 -E 'has failed|Cannot connect|ConfigException' "$work/operator-noapi.log" | cut -c1-200 || true)
  if ((rc != 0 && rc != 124 && took <= NO_API_LIMIT_S)) && [[ -n $why ]]; then
    pass "operator: no API server: exit status $rc after $took s (limit $NO_API_LIMIT_S s): $why"
  else
    fail "operator: no API server: status $rc after $took s; $why"; tail -5 "$work/operator-noapi.log"
  fi
}

trainer_run() {  # trainer_run MOUNT TMP STORAGE LOG ENV... -- ARGS...: autovision-trainer as a Job runs it
  local mnt=$1 tmp=$2 storage=$3 log=$4
  shift 4
  run_ro "$mnt" "$tmp" "$storage" -- "$@" >"$log" 2>&1
}

check_trainer() {
  local image=${prefix}autovision-trainer:$tag mnt tmp envs=() out t0 version
  step "trainer image $image"
  mnt=$(mount_image "$image" trainer)
  hygiene "$mnt" trainer
  mapfile -t envs < <(image_env "$image")
  identity "$mnt" trainer "${envs[@]}"
  out=$(run_ro "$mnt" "$work" - -- "${envs[@]}" python -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)' 2>&1 | tail -1)
  echo "    python, torch, torch's CUDA: $out"
  size_of "$image" "$mnt"
  # The Jobs' environment (operator builders.py): HOME=/tmp from the image, XDG_CACHE_HOME=/tmp/.cache.
  local job_env=("${envs[@]}" XDG_CACHE_HOME=/tmp/.cache)

  tmp=$(mktemp -d "$work/tmp-tr.XXXXXX"); chmod 1777 "$tmp"
  step "trainer: the digits zip, written inside the image"
  run_ro "$mnt" "$tmp" - -- "${job_env[@]}" python -c \
    'from pathlib import Path; from autovision.data.digits import write_digits_zip; print(write_digits_zip(Path("/tmp/digits.zip")))' \
    && [[ -s $tmp/digits.zip ]] && pass "trainer: wrote /tmp/digits.zip ($(stat -c %s "$tmp/digits.zip") bytes)" || fail "trainer: digits zip"

  local train_args=(train --namespace ns --job tj --uid u1 --dataset digits --budget-milli-node-hours 2 --optimize-for LowLatency)

  step "trainer: storage in a bind-mounted folder (/mnt/storage)"
  local folder=$work/storage; mkdir -p "$folder/storage"; chown -R 65532:65532 "$folder"
  local fenv=("${job_env[@]}" AUTOVISION_STORAGE_ROOT=file:///mnt/storage)
  t0=$SECONDS
  if trainer_run "$mnt" "$tmp" "$folder" "$work/import-folder.log" "${fenv[@]}" autovision-trainer import --name digits --source file:///tmp/digits.zip; then
    version=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$folder/storage/datasets/digits/latest.json")
    pass "trainer: import into the folder in $((SECONDS - t0)) s: version $version; $(grep -m1 'imported' "$work/import-folder.log" | cut -c1-160)"
    t0=$SECONDS
    if trainer_run "$mnt" "$tmp" "$folder" "$work/train-folder.log" "${fenv[@]}" autovision-trainer "${train_args[@]}" --dataset-version "$version"; then
      out=$("$py" -c 'import json,sys; p=json.load(open(sys.argv[1])); print(p["phase"], p["artifacts"]["onnx"])' "$folder/storage/runs/ns/tj/u1/progress.json")
      [[ $out == Succeeded* && -s $folder/storage/runs/ns/tj/u1/model/model.onnx ]] \
        && pass "trainer: search, fit and export into the folder in $((SECONDS - t0)) s: $out ($(stat -c %s "$folder/storage/runs/ns/tj/u1/model/model.onnx") bytes of ONNX)" \
        || fail "trainer: folder run: $out"
    else
      fail "trainer: train into the folder"; tail -15 "$work/train-folder.log"
    fi
  else
    fail "trainer: import into the folder"; tail -15 "$work/import-folder.log"
  fi

  step "trainer: storage in the embedded SeaweedFS on 127.0.0.1"
  "$py" scripts/image_check_services.py s3 "$work/seaweed" "$work/s3.env" >"$work/s3.log" 2>&1 &
  services+=($!)
  t0=$SECONDS; until [[ -s $work/s3.env ]] || ((SECONDS - t0 > 120)); do sleep 1; done
  local senv=("${job_env[@]}"); mapfile -t -O "${#senv[@]}" senv <"$work/s3.env"
  t0=$SECONDS
  if trainer_run "$mnt" "$tmp" - "$work/import-s3.log" "${senv[@]}" autovision-trainer import --name digits --source file:///tmp/digits.zip; then
    version=$(env "${senv[@]}" "$py" -c 'from autovision.storage import Storage; print(Storage.from_settings().read_json("datasets/digits/latest.json")["version"])')
    pass "trainer: import into SeaweedFS in $((SECONDS - t0)) s: version $version"
    t0=$SECONDS
    if trainer_run "$mnt" "$tmp" - "$work/train-s3.log" "${senv[@]}" autovision-trainer "${train_args[@]}" --dataset-version "$version"; then
      out=$(env "${senv[@]}" "$py" -c '
from autovision.storage import Storage
s = Storage.from_settings(); p = s.read_json("runs/ns/tj/u1/progress.json")
print(p["phase"], p["artifacts"]["onnx"], s.exists("runs/ns/tj/u1/model/model.onnx"))')
      [[ $out == Succeeded*True ]] && pass "trainer: search, fit and export into SeaweedFS in $((SECONDS - t0)) s: $out" \
        || fail "trainer: SeaweedFS run: $out"
    else
      fail "trainer: train into SeaweedFS"; tail -15 "$work/train-s3.log"
    fi
  else
    fail "trainer: import into SeaweedFS"; tail -15 "$work/import-s3.log"
  fi
  kill "${services[-1]}"; wait "${services[-1]}" 2>/dev/null || true

  step "gateway entry point (python -m autovision.serving.gateway), no Triton behind it"
  local gtmp gport pid; gtmp=$(mktemp -d "$work/tmp-gw.XXXXXX"); chmod 1777 "$gtmp"; gport=$(free_port)
  RUN_RO_EXEC=1 run_ro "$mnt" "$gtmp" - -- "${envs[@]}" python -m autovision.serving.gateway --host=127.0.0.1 "--port=$gport" \
    "--triton-url=127.0.0.1:$(free_port)" --model-name=autovision --public-name=digits >"$work/gateway.log" 2>&1 &
  pid=$!
  services+=("$pid")
  if out=$(wait_http "http://127.0.0.1:$gport/healthz" 60 "$pid"); then
    # 503 {"ready": false}: the gateway answers, and reports that Triton is not there.
    [[ $out == *'"ready": false'*'HTTP 503'* ]] && pass "gateway: /healthz answered: $out" || fail "gateway: /healthz: $out"
  else
    fail "gateway: $out"; tail -10 "$work/gateway.log"
  fi
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

[[ $only == trainer ]] || check_operator
[[ $only == operator ]] || check_trainer
echo "check-images.sh: $failures failure(s)"
((failures == 0))
