# Versions of everything the local cluster builds; sourced by hack/cluster/*.sh.
# The exact module versions live in hack/cluster/kube/go.mod and hack/cluster/traefik/go.mod.
KUBE_VERSION=v1.34.4   # k8s.io/kubernetes (staging modules pinned at v0.34.4)
ETCD_VERSION=v3.6.4
COREDNS_VERSION=v1.12.4
METRICS_SERVER_VERSION=v0.8.0
TRAEFIK_VERSION=v3.6.12
PAUSE_VERSION=3.10
GATEWAY_API_VERSION=v1.6.3   # sigs.k8s.io/gateway-api: its standard-channel CRDs (hack/cluster/gateway-api.sh)
# The monitoring stack (hack/cluster/monitoring.sh), one Go build (hack/cluster/monitoring/go.mod):
# github.com/prometheus/prometheus v0.307.3 = Prometheus v3.7.3 (Debian's 2.42 is built without Kubernetes
# service discovery) and github.com/prometheus-operator/prometheus-operator (the operator, its config
# reloader, its CRDs). Alertmanager is Debian's package (the host's binary).
PROMETHEUS_OPERATOR_VERSION=v0.87.1
PROMETHEUS_VERSION=v3.7.3
PROMETHEUS_MODULE_VERSION=v0.307.3

# what `kubectl version` and the node report (a plain `go build` would say v0.0.0-master)
kube_ldflags() {
  local minor=${KUBE_VERSION#v1.} f=""
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "-s -w$f"
}
prometheus_operator_ldflags() {
  local p=github.com/prometheus/common/version
  echo "-s -w -X $p.Version=${PROMETHEUS_OPERATOR_VERSION#v} -X $p.Revision=$PROMETHEUS_OPERATOR_VERSION -X $p.Branch=HEAD"
}
prometheus_ldflags() { echo "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v} -X github.com/prometheus/common/version.Branch=HEAD"; }
traefik_ldflags() { echo "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"; }

# Built binaries live under .cache/k8s/<name>-<version>-<hash of the build inputs>/, so
# changing a pin (or the wrapper's source, or the flags) rebuilds, and nothing else does.
_key() { { cat "${@:2}"; echo "$1"; } | sha256sum | cut -c1-12; }
kube_bin() { echo "$CACHE/k8s/kube-$KUBE_VERSION-$(_key "$(kube_ldflags)" "$ROOT"/hack/cluster/kube/{go.mod,go.sum,*.go})/kube"; }
traefik_bin() { echo "$CACHE/k8s/traefik-$TRAEFIK_VERSION-$(_key "$(traefik_ldflags)" "$ROOT"/hack/cluster/traefik/go.{mod,sum})/traefik"; }
# the folder of the monitoring stack's binaries (operator, prometheus-config-reloader, prometheus) and CRDs
monitoring_dir() {
  echo "$CACHE/k8s/monitoring-$PROMETHEUS_OPERATOR_VERSION-$PROMETHEUS_VERSION-$(_key "$(prometheus_operator_ldflags) $(prometheus_ldflags)" "$ROOT"/hack/cluster/monitoring/*)"
}
# go_caches: the Go module and build caches every local build uses (build.sh, monitoring.sh build), one
# pair so the Kubernetes packages they share compile once; held under a lock while a build runs.
go_caches() {
  export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  mkdir -p "$CACHE/go" && exec {GO_CACHES_LOCK}>"$CACHE/go/.lock" && flock "$GO_CACHES_LOCK"
}
# module_dir MODULE VERSION: the source of that module version, downloaded once into the project's module
# cache (outside any go.mod: hack/cluster/monitoring's names github.com/prometheus/prometheus itself);
# GOPROXY, GOFLAGS, GONOSUMDB... as the user set them
module_dir() {
  local json
  json=$(mkdir -p "$CACHE" && cd "$CACHE" && GOMODCACHE="$CACHE/go/mod" GOTOOLCHAIN=local go mod download -json "$1@$2") ||
    die "go mod download $1@$2 failed: $json"
  python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])' <<<"$json"
}
# go_caches_done [--unless-monitoring-next]: drop the caches (~10 GB, only worth their disk while building:
# the binaries are the cache), or keep them for the monitoring stack's build that cluster-up starts next;
# then release the lock (a lock is per open file: the same script taking it again would wait for itself)
go_caches_done() {
  if [[ "${1:-}" != --unless-monitoring-next || "${MONITORING:-1}" == 0 || -e "$(monitoring_dir)/.complete" ]]; then
    go clean -cache -modcache
    step "Go's build and module caches cleaned ($(disk_free) disk free)"
  fi
  exec {GO_CACHES_LOCK}>&-
}
pause_bin() { echo "$CACHE/k8s/pause-$PAUSE_VERSION-$(_key "" "$ROOT/hack/cluster/pause.c")/pause"; }
