# Shared shell helpers for hack/ scripts: source it, don't run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"      # downloads and builds, kept between runs
DATA="$ROOT/.data"        # runtime state (MLflow store, cluster state, logs)
TOOLS="$ROOT/.tools/bin"  # binaries the project installs for itself (helm, kubectl, ...)
VENV="$ROOT/.venv"
export PATH="$TOOLS:$VENV/bin:$PATH"
# No pip cache: it would hold torch and its CUDA wheels a third time (3 GB) beside the venv and the
# image wheel caches, which are the caches; the package index here serves a second download fast.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# MLflow's usage telemetry stays off in everything these scripts run, unless the caller turns it on
export MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true}
mkdir -p "$CACHE" "$DATA" "$TOOLS"

step() { printf '\033[1;34m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND once a second until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after waiting for $what"
    sleep 1
  done
}

# free_port: a TCP port nothing listens on now, for a short-lived local server.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
# disk_free: space left on the project's filesystem (images and caches are heavy: shown as they grow)
disk_free() { df -h --output=avail "$ROOT" | tail -1 | tr -d ' '; }

# with_wheel_server DIR COMMAND...: serves DIR over HTTP on the host's docker bridge address for as
# long as COMMAND runs, its URL in $WHEELS_URL. A `docker build` reaches the host there, so an image
# installs its wheels from the host's cache with no registry and no wheels in the build context.
with_wheel_server() (
  local dir=$1 address port server
  shift
  [[ -d "$dir" ]] || die "no directory $dir to serve"
  address=$(python3 "$ROOT/hack/docker_bridge.py") || die "cannot serve $dir to docker builds (see above)"
  port=$(free_port)
  python3 -m http.server --bind "$address" --directory "$dir" "$port" >"$DATA/wheel-server.log" 2>&1 &
  server=$!
  trap 'kill "$server" 2>/dev/null || true' EXIT
  wait_for 30 "the wheel server on $address:$port (log: .data/wheel-server.log)" \
    curl -fsS -o /dev/null "http://$address:$port/"
  WHEELS_URL="http://$address:$port/" "$@"
)
