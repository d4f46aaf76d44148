#!/usr/bin/env bash
# Builds the cluster's binaries from the Go module proxy, cached by version under .cache/k8s:
#   kube     one multi-call binary (hack/cluster/kube): etcd, kube-apiserver,
#            kube-controller-manager, kube-scheduler, kubelet, kube-proxy, coredns, metrics-server
#   traefik  the ingress controller (hack/cluster/traefik)
#   pause    the pod sandbox's program, from C (hack/cluster/pause.c)
# Each build's duration is kept next to the binary (NAME.seconds).
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"

go_caches # static binaries (CGO off): they also run in FROM-scratch images
# metrics-server v0.8.0 is served by the proxy but missing from sum.golang.org; go.sum pins its hash.
export GONOSUMDB=sigs.k8s.io/metrics-server

# build_go OUT MODULE_DIR PACKAGE LDFLAGS
build_go() {
  local out=$1 dir=$2 pkg=$3 ldflags=$4 t0=$SECONDS
  [[ -x "$out" ]] && return 0
  step "building $(basename "$out") from the Go module proxy (cold: long on 2 cores; cached in ${out#"$ROOT"/})"
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && go build -trimpath -ldflags="$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo "$((SECONDS - t0))" >"$out.seconds"
  step "built $(basename "$out") in $((SECONDS - t0)) s"
  built=1
}

pause=$(pause_bin)
if [[ ! -x "$pause" ]]; then
  mkdir -p "$(dirname "$pause")"
  gcc -Os -static -o "$pause" "$ROOT/hack/cluster/pause.c"
fi
for what in ${BUILD:-kube traefik}; do
  case $what in
    kube) build_go "$(kube_bin)" "$ROOT/hack/cluster/kube" . "$(kube_ldflags)" ;;
    traefik) build_go "$(traefik_bin)" "$ROOT/hack/cluster/traefik" github.com/traefik/traefik/v3/cmd/traefik "$(traefik_ldflags)" ;;
  esac
done
if ((${built:-0})); then go_caches_done --unless-monitoring-next; fi
