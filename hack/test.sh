#!/usr/bin/env bash
# The README's test command: installs and starts everything the tests need, then runs them all.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/hack/setup.sh"
bash "$ROOT/hack/docker.sh"
step "lint"
ruff check "$ROOT"
trap 'bash "$ROOT/hack/cluster/down.sh" --owner $$' EXIT; MODELOPS_CLUSTER_OWNER=$$ bash "$ROOT/hack/cluster/up.sh"
step "images (Dockerfile.inference, Dockerfile.operator) into the cluster, Helm 3 for the chart test"
bash "$ROOT/hack/cluster/images.sh" project
[[ -x "$ROOT/.tools/helm3/helm" ]] || make -C "$ROOT" --no-print-directory helm3
step "pytest (nothing may be skipped)"
export MODELOPS_NO_SKIP=1 MODELOPS_CLUSTER_TESTS=required
cd "$ROOT" && pytest "$@"
