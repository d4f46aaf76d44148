# Shared shell helpers for hack/ scripts: source it, don't run it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"      # downloads and builds, kept between runs
DATA="$ROOT/.data"        # runtime state (MLflow store, cluster state, logs)
TOOLS="$ROOT/.tools/bin"  # binaries the project installs for itself (helm, kubectl, ...)
VENV="$ROOT/.venv"
export PATH="$TOOLS:$VENV/bin:$PATH"
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
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
