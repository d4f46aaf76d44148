#!/usr/bin/env bash
# make cluster-status: what runs in the cluster in use (local, or KUBECONFIG's).
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
[[ -n "${KUBECONFIG:-}" ]] || export KUBECONFIG="$KUBECONFIG_OUT"
kubectl get --raw /readyz >/dev/null 2>&1 || die "no cluster answers at KUBECONFIG=$KUBECONFIG (make cluster-up)"
echo "KUBECONFIG=$KUBECONFIG"
kubectl get nodes -o wide
kubectl get pods -A -o wide
kubectl top nodes 2>/dev/null || true
