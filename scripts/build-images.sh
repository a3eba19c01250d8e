#!/usr/bin/env bash
# Build the two AutoVision images from the repository root:
#   autovision-operator:TAG  (operator/Dockerfile; kopf, no torch)
#   autovision-trainer:TAG   (trainer-image/Dockerfile; torch's CUDA build, the gateway)
#
# With `docker build` where a Docker engine answers, otherwise with
# `buildah bud --isolation chroot` (no OCI runtime needed; run as root).
#
#   scripts/build-images.sh [--local-base] [--only operator|trainer] [--tag TAG] [--prefix NAME/]
#
# --local-base: no registry is needed. Stand-in base images are made first with
#   debootstrap from Debian's package archive (Debian 12, Python 3.11) and passed
#   through the Dockerfiles' base-image arguments (PYTHON_IMAGE, CUDA_IMAGE):
#     localhost/autovision-standin/python:3.11-bookworm   for python:3.11.13-slim-bookworm
#     localhost/autovision-standin/cuda-base:bookworm     for nvidia/cuda:12.8.1-base-ubuntu24.04
#   The CUDA stand-in has what the CUDA base gives the Dockerfile (apt, CA
#   certificates, NVIDIA's environment variables) but no CUDA runtime and Ubuntu's
#   Python 3.12 becomes Debian's 3.11: an image built on it is for checking the
#   Dockerfile's steps and the entry points, not for a GPU node.
#   Without --local-base the Dockerfiles' own pinned bases are pulled.
#   DEBOOTSTRAP_CACHE_DIR=DIR keeps debootstrap's downloaded packages for the next run.
#
# Not part of the per-push tests: the trainer build downloads torch and its CUDA
# libraries (several GB). scripts/check-images.sh runs the built images.
set -Eeuo pipefail  # -E: the ERR trap also fires inside functions

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

local_base=0
only=""
tag="0.1.0"
prefix=""
while (($#)); do
  case "$1" in
    --local-base) local_base=1 ;;
    --only) only=${2:?--only needs operator or trainer}; shift ;;
    --tag) tag=${2:?--tag needs a value}; shift ;;
    --prefix) prefix=${2:?--prefix needs a value}; shift ;;
    -h|--help) sed -n "2,24p" "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
case "$only" in ""|operator|trainer) ;; *) echo "build-images.sh: --only takes operator or trainer, not '$only'" >&2; exit 2 ;; esac

die() { echo "build-images.sh: $*" >&2; exit 1; }
step() { echo "==> [$(date -u +%H:%M:%S)] $*"; }
trap 'echo "build-images.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
temporary=()  # removed on exit, however the script ends
trap 'rm -rf "${temporary[@]}"' EXIT

# The engine: Docker where an engine answers, else buildah with chroot isolation.
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  engine=docker
elif command -v buildah >/dev/null 2>&1; then
  engine=buildah
  [[ $(id -u) == 0 ]] || die "buildah with --isolation chroot needs root here (vfs/overlay storage under /var/lib/containers)"
else
  die "neither a Docker engine nor buildah: install Docker, or 'apt-get install -y buildah'"
fi
step "engine: $engine"

# Free space. buildah copies whole layers (with vfs, every layer in full), and the
# trainer's virtual environment holds torch's CUDA build: about 9 GB installed,
# held by the build stage, the final stage and the layers' temporary copies.
need_gb=4
[[ $only == operator ]] || need_gb=30
if [[ $engine == buildah ]]; then
  store=$(buildah info --format '{{.store.GraphRoot}}' 2>/dev/null || echo /var/lib/containers/storage)
else
  store=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
fi
mkdir -p "$store"
for dir in "$store" "${TMPDIR:-/var/tmp}"; do
  avail_gb=$(df --output=avail -BG "$dir" | tail -1 | tr -dc '0-9')
  ((avail_gb >= need_gb)) || die "only ${avail_gb} GB free under $dir; this build needs ${need_gb} GB (free space or set TMPDIR)"
  echo "    ${avail_gb} GB free under $dir (need ${need_gb})"
done

# A TLS-intercepting proxy: where the host's pip needs PIP_CERT (a CA bundle), the
# builds' pip gets it too, bind-mounted for the RUN steps only (buildah -v), so
# neither the bundle nor the pip.conf naming it is written into an image.
mounts=()
if [[ -n ${PIP_CERT:-} ]]; then
  [[ -r $PIP_CERT ]] || die "PIP_CERT=$PIP_CERT is not a readable file"
  if [[ $engine == docker ]]; then
    echo "build-images.sh: warning: PIP_CERT is set but docker build cannot mount it; the builds' pip uses its own CA bundle" >&2
  else
    pipconf=$(mktemp "${TMPDIR:-/var/tmp}/autovision-pip.XXXXXX.conf")
    temporary+=("$pipconf")
    printf '[global]\ncert = /run/autovision-build-ca.crt\n' >"$pipconf"
    mounts=(-v "$PIP_CERT:/run/autovision-build-ca.crt:ro" -v "$pipconf:/etc/pip.conf:ro")
    step "PIP_CERT=$PIP_CERT: mounted into the builds' RUN steps as /etc/pip.conf's cert"
  fi
fi

build() {  # build DOCKERFILE IMAGE [--build-arg ...]
  local file=$1 image=$2
  shift 2
  step "building $image from $file"
  local start=$SECONDS
  if [[ $engine == docker ]]; then
    docker build -f "$file" -t "$image" "$@" .
  else
    buildah bud --isolation chroot --layers=false "${mounts[@]}" -f "$file" -t "$image" "$@" .
  fi
  step "built $image in $((SECONDS - start)) s"
}

# Stand-in bases: a Debian root file system from debootstrap, imported as an image.
debian_standin=localhost/autovision-standin/debian:bookworm
python_standin=localhost/autovision-standin/python:3.11-bookworm
cuda_standin=localhost/autovision-standin/cuda-base:bookworm

image_exists() {
  if [[ $engine == docker ]]; then docker image inspect "$1" >/dev/null 2>&1; else buildah inspect --type image "$1" >/dev/null 2>&1; fi
}

make_standins() {
  command -v debootstrap >/dev/null 2>&1 || die "--local-base needs debootstrap: apt-get install -y debootstrap"
  [[ $(id -u) == 0 ]] || die "--local-base needs root (debootstrap)"
  local work
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/autovision-standin.XXXXXX")
  temporary+=("$work")
  if ! image_exists "$debian_standin"; then
    step "debootstrap: Debian 12 minbase (+ ca-certificates) into $work/rootfs"
    local start=$SECONDS
    local cache=()
    [[ -z ${DEBOOTSTRAP_CACHE_DIR:-} ]] || cache=(--cache-dir="$DEBOOTSTRAP_CACHE_DIR")
    debootstrap --variant=minbase --include=ca-certificates "${cache[@]}" bookworm "$work/rootfs" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    # As Debian's own images: the same package sources, and no package lists or archives.
    cat >"$work/rootfs/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/archives/"*.deb
    # Debian's and Ubuntu's official images delete downloaded packages after each
    # install (apt.conf.d/docker-clean); the Dockerfiles rely on it, so does the stand-in.
    cat >"$work/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    step "debootstrap took $((SECONDS - start)) s; importing as $debian_standin"
    if [[ $engine == docker ]]; then
      tar -C "$work/rootfs" --numeric-owner -cf - . | docker import --change 'CMD ["bash"]' - "$debian_standin"
    else
      local ctr mnt
      ctr=$(buildah from --name autovision-standin-import scratch)
      mnt=$(buildah mount "$ctr")
      tar -C "$work/rootfs" --numeric-owner -cf - . | tar -C "$mnt" --numeric-owner -xpf -
      buildah umount "$ctr" >/dev/null
      buildah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
      buildah commit --rm "$ctr" "$debian_standin"
    fi
    rm -rf "$work/rootfs"
  else
    step "$debian_standin exists; reused"
  fi

  # python:3.11.13-slim-bookworm gives the Dockerfile `python` with venv and pip.
  cat >"$work/Containerfile.python" <<EOF
FROM $debian_standin
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-venv \\
 && ln -s python3 /usr/bin/python \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
ENV LANG=C.UTF-8
CMD ["python3"]
EOF
  # nvidia/cuda:12.8.1-base-ubuntu24.04 gives the Dockerfile apt, CA certificates and
  # NVIDIA's environment (the CUDA runtime itself is not needed by torch's wheels,
  # which bring their own CUDA libraries, and a stand-in has no GPU anyway).
  cat >"$work/Containerfile.cuda" <<EOF
FROM $debian_standin
ENV NVIDIA_VISIBLE_DEVICES=all \\
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \\
    CUDA_VERSION=12.8.1 \\
    PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64
LABEL org.autovision.standin-for="nvidia/cuda:12.8.1-base-ubuntu24.04"
EOF
  # The stand-ins need no pip: no build-time mounts (their mount points would stay).
  local saved=("${mounts[@]}")
  mounts=()
  if [[ $only != trainer ]]; then
    if image_exists "$python_standin"; then step "$python_standin exists; reused"; else build "$work/Containerfile.python" "$python_standin"; fi
  fi
  if [[ $only != operator ]]; then
    if image_exists "$cuda_standin"; then step "$cuda_standin exists; reused"; else build "$work/Containerfile.cuda" "$cuda_standin"; fi
  fi
  mounts=("${saved[@]}")
}

operator_args=()
trainer_args=()
if ((local_base)); then
  make_standins
  operator_args=(--build-arg "PYTHON_IMAGE=$python_standin")
  trainer_args=(--build-arg "CUDA_IMAGE=$cuda_standin")
fi

if [[ $only != trainer ]]; then
  build operator/Dockerfile "${prefix}autovision-operator:$tag" "${operator_args[@]}"
fi
if [[ $only != operator ]]; then
  build trainer-image/Dockerfile "${prefix}autovision-trainer:$tag" "${trainer_args[@]}"
fi

step "done"
if [[ $engine == buildah ]]; then
  buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'autovision' || true
else
  docker images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'autovision' || true
fi
