# Versions of everything the local cluster builds; sourced by hack/cluster/*.sh.
# The exact module versions live in hack/cluster/kube/go.mod and hack/cluster/traefik/go.mod.
KUBE_VERSION=v1.34.4   # k8s.io/kubernetes (staging modules pinned at v0.34.4)
ETCD_VERSION=v3.6.4
COREDNS_VERSION=v1.12.4
METRICS_SERVER_VERSION=v0.8.0
TRAEFIK_VERSION=v3.6.12
PAUSE_VERSION=3.10

# what `kubectl version` and the node report (a plain `go build` would say v0.0.0-master)
kube_ldflags() {
  local minor=${KUBE_VERSION#v1.} f=""
  minor=${minor%%.*}
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "-s -w$f"
}
traefik_ldflags() { echo "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"; }

# Built binaries live under .cache/k8s/<name>-<version>-<hash of the build inputs>/, so
# changing a pin (or the wrapper's source, or the flags) rebuilds, and nothing else does.
_key() { { cat "${@:2}"; echo "$1"; } | sha256sum | cut -c1-12; }
kube_bin() { echo "$CACHE/k8s/kube-$KUBE_VERSION-$(_key "$(kube_ldflags)" "$ROOT"/hack/cluster/kube/{go.mod,go.sum,*.go})/kube"; }
traefik_bin() { echo "$CACHE/k8s/traefik-$TRAEFIK_VERSION-$(_key "$(traefik_ldflags)" "$ROOT"/hack/cluster/traefik/go.{mod,sum})/traefik"; }
pause_bin() { echo "$CACHE/k8s/pause-$PAUSE_VERSION-$(_key "" "$ROOT/hack/cluster/pause.c")/pause"; }
