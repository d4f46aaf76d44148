#!/usr/bin/env bash
# The README's test command: installs and starts everything the tests need, then runs them all.
source "$(dirname "$0")/lib.sh"
# a second run would reuse the first one's cluster and lose it when the first one stops it
exec 9>"$DATA/test.lock"
flock -n 9 || die "another \`make test\` is running in $ROOT (it holds .data/test.lock); wait for it to end"
step "$(disk_free) disk free (a cold run needs about 25 GB: torch in the venv and the training image)"
# The monitoring stack's tests need it, so make test installs it whatever MODELOPS_MONITORING says;
# cluster-up builds and installs it in the background while the project's images build.
export MODELOPS_MONITORING=1 MODELOPS_MONITORING_WAIT=0
bash "$ROOT/hack/setup.sh"
bash "$ROOT/hack/docker.sh" 9>&-  # daemons must not inherit the lock
step "lint"
ruff check "$ROOT"
trap 'bash "$ROOT/hack/cluster/down.sh" --owner $$' EXIT; MODELOPS_CLUSTER_OWNER=$$ bash "$ROOT/hack/cluster/up.sh" 9>&-
step "images (Dockerfile.inference, .operator, .training) into the cluster; Helm 3 and the monitoring stack meanwhile"
# Helm 3 (one chart test) builds in the background beside the images, at the lowest priority
helm3_job=""
if [[ ! -x "$ROOT/.tools/helm3/helm" ]]; then
  nice -n 19 make -C "$ROOT" --no-print-directory helm3 >"$DATA/helm3-build.log" 2>&1 9>&- &
  helm3_job=$!
fi
bash "$ROOT/hack/cluster/images.sh" project
bash "$ROOT/hack/cluster/monitoring.sh" ensure
if [[ -n "$helm3_job" ]]; then
  wait "$helm3_job" || die "Helm 3 did not build (make helm3): see .data/helm3-build.log
$(tail -20 "$DATA/helm3-build.log")"
fi
step "$(disk_free) disk free"

# The cluster's tests wait on pods, rollouts and Prometheus most of their time: the other tests run beside
# them, at a lower priority (the cluster's tests have real components' deadlines), their output kept in
# .data/pytest-other.log and printed when both are done.
export MODELOPS_NO_SKIP=1 MODELOPS_CLUSTER_TESTS=required
cd "$ROOT" || exit 1
rm -rf "$DATA/pytest" && mkdir -p "$DATA/pytest"
step "pytest (nothing may be skipped): the tests without the cluster in the background (.data/pytest-other.log)"
nice -n 10 pytest -m "not cluster" --basetemp "$DATA/pytest/other" "$@" >"$DATA/pytest-other.log" 2>&1 9>&- &
other=$!
step "pytest: the cluster's tests"
cluster_rc=0 other_rc=0
pytest -m cluster --basetemp "$DATA/pytest/cluster" "$@" || cluster_rc=$?
if kill -0 "$other" 2>/dev/null; then step "waiting for the tests without the cluster"; fi
wait "$other" || other_rc=$?
step "pytest: the tests without the cluster (.data/pytest-other.log)"
cat "$DATA/pytest-other.log"
summary() { grep -E '^=+ .*(passed|failed|error|no tests ran).* =+$' "$1" | tail -1; }
step "pytest: the cluster's tests: exit $cluster_rc; the others: exit $other_rc ($(summary "$DATA/pytest-other.log"))"
((cluster_rc == 0 && other_rc == 0)) || die "pytest failed (the cluster's tests exit $cluster_rc, the others exit $other_rc)"
