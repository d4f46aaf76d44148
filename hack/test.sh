#!/usr/bin/env bash
# The README's test command: installs and starts everything the tests need, then runs them all.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/hack/setup.sh"
bash "$ROOT/hack/docker.sh"
step "lint"
ruff check "$ROOT"
step "pytest"
cd "$ROOT" && exec pytest "$@"
