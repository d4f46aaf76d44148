#!/usr/bin/env bash
# make cluster-test: brings the cluster up (unless one is already up), runs tests/cluster, and
# brings it down again if it started it.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
started=""
if [[ -z "${KUBECONFIG:-}" ]] && ! local_cluster_up; then
  started=1
  trap 'bash "$ROOT/hack/cluster/down.sh"' EXIT
  bash "$ROOT/hack/cluster/up.sh"
fi
cd "$ROOT" && pytest tests/cluster "$@"
