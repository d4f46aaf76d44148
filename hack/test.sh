#!/usr/bin/env bash
# The README's test command: installs and starts everything the tests need, then runs them all.
source "$(dirname "$0")/lib.sh"
# a second run would reuse the first one's cluster and lose it when the first one stops it
exec 9>"$DATA/test.lock"
flock -n 9 || die "another \`make test\` is running in $ROOT (it holds .data/test.lock); wait for it to end"
step "$(disk_free) disk free (a cold run needs about 25 GB: torch in the venv and the training image)"
bash "$ROOT/hack/setup.sh"
bash "$ROOT/hack/docker.sh" 9>&-  # daemons must not inherit the lock
step "lint"
ruff check "$ROOT"
trap 'bash "$ROOT/hack/cluster/down.sh" --owner $$' EXIT; MODELOPS_CLUSTER_OWNER=$$ bash "$ROOT/hack/cluster/up.sh" 9>&-
step "Helm 3 for the chart test, images (Dockerfile.inference, .operator, .training) into the cluster"
[[ -x "$ROOT/.tools/helm3/helm" ]] || make -C "$ROOT" --no-print-directory helm3
bash "$ROOT/hack/cluster/images.sh" project
step "$(disk_free) disk free"
step "pytest (nothing may be skipped)"
export MODELOPS_NO_SKIP=1 MODELOPS_CLUSTER_TESTS=required
cd "$ROOT" && pytest "$@"
