#!/usr/bin/env bash
# Installs what the project needs on a fresh machine, idempotently: the Python venv with pinned
# dependencies, then every hack/setup.d/*.sh step in order (system packages, tools, ...).
source "$(dirname "$0")/lib.sh"

stamp="$VENV/.modelops-stamp"
want=$(cat "$ROOT/constraints.txt" "$ROOT"/*/pyproject.toml "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  step "python venv (.venv), pinned by constraints.txt: first run downloads torch (~3 GB)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install --progress-bar on -c "$ROOT/constraints.txt" -r "$ROOT/requirements-dev.txt" \
    -e "$ROOT/registry" -e "$ROOT/training" -e "$ROOT/inference" -e "$ROOT/operator"
  echo "$want" >"$stamp"
fi

for s in "$ROOT"/hack/setup.d/*.sh; do
  [[ -e "$s" ]] || continue
  bash "$s"
done
step "setup done"
