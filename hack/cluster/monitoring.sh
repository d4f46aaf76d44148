#!/usr/bin/env bash
# The local monitoring stack in namespace "monitoring" (hack/cluster/manifests/monitoring.yaml):
# the Prometheus Operator and Prometheus built from their Go modules (Debian's Prometheus 2.42 has no
# Kubernetes service discovery), Alertmanager from Debian's package, in images built here.
#   monitoring.sh build      the operator, its config reloader and Prometheus from the Go module proxy in one
#                            build (once: cached in .cache/k8s/monitoring-<versions>-<key>/), the CRD YAML too
#   monitoring.sh install    build, images (loaded into the cluster), CRDs (server-side), the stack; waits
#                            until Prometheus and Alertmanager are Ready
#   monitoring.sh up         what make cluster-up runs in the background once the cluster's own binaries are
#                            built: build, then install as soon as the API server answers and containerd
#                            holds the base image (up.sh loads it)
#   monitoring.sh ensure     what make test and make demo run once the project's images are built: wait for
#                            the `up` cluster-up left running, if any, then install (quick when it is there)
#   monitoring.sh urls       where Prometheus and Alertmanager answer on the host
#   monitoring.sh uninstall  delete the namespace and the cluster roles (the CRDs stay: others use them)
# MODELOPS_MONITORING=0 turns it off for make cluster-up and make demo.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator
DIR=$(monitoring_dir)
# the local cluster's kubeconfig unless KUBECONFIG names another (`up` runs before up.sh exports it)
if [[ "${1:-}" == up || -z "${KUBECONFIG:-}" ]]; then export KUBECONFIG="$KUBECONFIG_OUT"; fi
INTERVAL=${MODELOPS_MONITORING_INTERVAL:-10s} # scrape and evaluation: short, so tests see results fast

# build: one `go build` tree for the three binaries, in a copy of Prometheus's module source with
# hack/cluster/monitoring's go.mod, go.sum and plugins.go in place of its own (see that go.mod). It shares
# build.sh's Go caches (go_caches): the Kubernetes packages the cluster's build compiled are not compiled
# again, and whichever build ends last drops the caches. At the lowest priority: it runs beside the
# cluster's start and the project's image builds, which are on make test's path.
build() {
  local t0=$SECONDS src prometheus operator
  [[ -e "$DIR/.complete" ]] && return 0
  command -v go >/dev/null || die "go is not installed: needed to build Prometheus $PROMETHEUS_VERSION and the Prometheus Operator"
  go_caches
  if [[ -e "$DIR/.complete" ]]; then exec {GO_CACHES_LOCK}>&- && return 0; fi # another run built it meanwhile
  step "building Prometheus $PROMETHEUS_VERSION and the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION from the Go module proxy (once; cached in ${DIR#"$ROOT"/})"
  prometheus=$(module_dir github.com/prometheus/prometheus "$PROMETHEUS_MODULE_VERSION")
  operator=$(module_dir "$OPERATOR_MODULE" "$PROMETHEUS_OPERATOR_VERSION")
  rm -rf "$DIR" && mkdir -p "$DIR" && src="$DIR/src"
  cp -r "$prometheus" "$src" && chmod -R u+w "$src"
  cp "$ROOT"/hack/cluster/monitoring/go.{mod,sum} "$src/" && cp "$ROOT/hack/cluster/monitoring/plugins.go" "$src/plugins/"
  # two links of one compile: each binary's version strings are linker flags
  (cd "$src" &&
    nice -n 19 go build -trimpath -ldflags="$(prometheus_operator_ldflags)" -o "$DIR/" \
      "$OPERATOR_MODULE/cmd/operator" "$OPERATOR_MODULE/cmd/prometheus-config-reloader" &&
    nice -n 19 go build -trimpath -ldflags="$(prometheus_ldflags)" -o "$DIR/" ./cmd/prometheus)
  mkdir -p "$DIR/crds" && cp "$operator"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml "$DIR/crds/"
  chmod -R u+w "$DIR/crds" && rm -rf "$src"
  echo "$((SECONDS - t0))" >"$DIR/build.seconds"
  touch "$DIR/.complete"
  step "built the monitoring stack's binaries in $((SECONDS - t0)) s"
  go_caches_done
}

# Image names: the Go binaries by their build key, Debian's by package version and binary hash, so a
# rebuilt binary or an upgraded package gives a new image (and a rollout), and nothing else does.
operator_image() { echo "local/prometheus-operator:$PROMETHEUS_OPERATOR_VERSION-${DIR##*-}"; }
reloader_image() { echo "local/prometheus-config-reloader:$PROMETHEUS_OPERATOR_VERSION-${DIR##*-}"; }
prometheus_image() { echo "local/prometheus:$PROMETHEUS_VERSION-${DIR##*-}"; }
debian_version() { local v; v=$(dpkg-query -W -f '${Version}' "$1") && v=${v#*:} && echo "v${v%%[+~-]*}"; }
alertmanager_image() {
  echo "local/alertmanager:$(debian_version prometheus-alertmanager)-$(sha256sum /usr/bin/prometheus-alertmanager | cut -c1-12)"
}

# scratch_image IMAGE BINARY: a FROM-scratch image of one static binary in /bin (the operator runs the
# reloader as /bin/prometheus-config-reloader)
scratch_image() {
  local image=$1 bin=$2 tmp name
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  name=$(basename "$bin") tmp=$(mktemp -d)
  mkdir -p "$tmp/bin" "$tmp/tmp" "$tmp/etc" && chmod 1777 "$tmp/tmp"
  cp "$bin" "$tmp/bin/$name"
  printf 'root:x:0:0:root:/:/bin/%s\nnobody:x:65534:65534:nobody:/:/bin/%s\n' "$name" "$name" >"$tmp/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$tmp/etc/group"
  tar -C "$tmp" -c . | docker import -c "ENTRYPOINT [\"/bin/$name\"]" - "$image" >/dev/null
  rm -rf "$tmp"
}

# alertmanager_from_debian IMAGE: the local Debian base with the host's Debian-built Alertmanager as
# /bin/alertmanager (dynamically linked to glibc only: the base is the same bookworm) and the templates
# Debian's build looks for in /usr/share/prometheus/alertmanager
alertmanager_from_debian() {
  local image=$1 bin=/usr/bin/prometheus-alertmanager cid
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  [[ -x "$bin" ]] || die "$bin missing: install Debian's prometheus-alertmanager (make setup)"
  cid=$(docker create "$BASE_IMAGE" /bin/true)
  docker cp "$bin" "$cid:/bin/alertmanager" >/dev/null
  docker cp /usr/share/prometheus "$cid:/usr/share/" >/dev/null
  docker commit -c 'ENTRYPOINT ["/bin/alertmanager"]' -c 'CMD []' -c 'USER nobody' -c 'WORKDIR /tmp' "$cid" "$image" >/dev/null
  docker rm "$cid" >/dev/null
}

images() {
  bash "$ROOT/hack/docker.sh"
  bash "$ROOT/hack/base-image.sh"
  scratch_image "$(operator_image)" "$DIR/operator"
  scratch_image "$(reloader_image)" "$DIR/prometheus-config-reloader"
  scratch_image "$(prometheus_image)" "$DIR/prometheus"
  alertmanager_from_debian "$(alertmanager_image)"
  bash "$ROOT/hack/load-image.sh" "$(operator_image)" "$(reloader_image)" "$(prometheus_image)" "$(alertmanager_image)"
}

# crds_installed: every CRD of the folder exists at this operator version
crds_installed() {
  local versions
  versions=$(kubectl get -f "$DIR/crds" -o jsonpath='{range .items[*]}{.metadata.annotations.operator\.prometheus\.io/version}{"\n"}{end}' 2>/dev/null) ||
    return 1
  [[ -n "$versions" ]] && ! grep -qvx "${PROMETHEUS_OPERATOR_VERSION#v}" <<<"$versions"
}

render() {
  sed -e "s|@PROMETHEUS_OPERATOR_IMAGE@|$(operator_image)|g" -e "s|@CONFIG_RELOADER_IMAGE@|$(reloader_image)|g" \
    -e "s|@PROMETHEUS_IMAGE@|$(prometheus_image)|g" -e "s|@PROMETHEUS_VERSION@|$PROMETHEUS_VERSION|g" \
    -e "s|@ALERTMANAGER_IMAGE@|$(alertmanager_image)|g" -e "s|@ALERTMANAGER_VERSION@|$(debian_version prometheus-alertmanager)|g" \
    -e "s|@PROMETHEUS_PORT@|$PROMETHEUS_PORT|g" -e "s|@ALERTMANAGER_PORT@|$ALERTMANAGER_PORT|g" -e "s|@INTERVAL@|$INTERVAL|g" \
    "$ROOT/hack/cluster/manifests/monitoring.yaml"
}

# ready KIND: the operator's Available condition on the monitoring namespace's "main" object
ready() { [[ "$(kubectl -n monitoring get "$1" main -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" == True ]]; }

install() {
  local t0=$SECONDS
  build
  images
  if ! crds_installed; then
    step "Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRDs into the cluster (server-side: they are too big for a client-side apply)"
    kubectl apply --server-side --force-conflicts --field-manager modelops-cluster -f "$DIR/crds" >/dev/null
    kubectl wait --for condition=Established --timeout 60s -f "$DIR/crds" >/dev/null
  fi
  step "monitoring stack: prometheus-operator, Prometheus and Alertmanager in namespace monitoring"
  render | kubectl apply -f - >/dev/null
  kubectl -n monitoring rollout status deployment/prometheus-operator --timeout 180s >/dev/null ||
    die "the Prometheus Operator did not become ready: kubectl -n monitoring logs deploy/prometheus-operator"
  wait_for 180 "Prometheus monitoring/main Available (kubectl -n monitoring describe prometheus main)" ready prometheus
  wait_for 120 "Alertmanager monitoring/main Available (kubectl -n monitoring describe alertmanager main)" ready alertmanager
  step "monitoring stack ready in $((SECONDS - t0)) s"
  urls
}

# up: make cluster-up's background job. The Go build overlaps the cluster's own build and start; the
# rest waits for what up.sh provides (the API server; containerd with the base image loaded), giving up
# when up.sh is gone.
up() {
  local parent=${MODELOPS_PARENT_PID:-$PPID}
  build
  until kubectl get --raw /readyz >/dev/null 2>&1 && [[ -n $("${CTR[@]}" images ls -q "name==docker.io/$BASE_IMAGE" 2>/dev/null) ]]; do
    kill -0 "$parent" 2>/dev/null || die "cluster-up (pid $parent) is gone"
    sleep 1
  done
  install
}

# ensure: the stack installed. The `up` that cluster-up left running (MODELOPS_MONITORING_WAIT=0) is waited
# for, whatever its outcome: install then either finds everything in place or fails with the reason.
ensure() {
  local pid
  pid=$(cat "$C/monitoring.pid" 2>/dev/null) || true
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    step "waiting for the monitoring stack cluster-up is installing (log: ${LOGS#"$ROOT"/}/monitoring.log)"
    while kill -0 "$pid" 2>/dev/null; do sleep 2; done
  fi
  install
}

urls() {
  cat <<MSG
  Prometheus:   http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query?query=up    (HTTP API only: the web UI's assets are not in the Go module;
                every ServiceMonitor, PodMonitor, PrometheusRule; firing alerts: /api/v1/alerts)
  Alertmanager: http://127.0.0.1:$ALERTMANAGER_PORT/    (API: /api/v2/alerts; every AlertmanagerConfig, matcher strategy None)
MSG
}

uninstall() {
  kubectl delete namespace monitoring --ignore-not-found
  kubectl delete clusterrole,clusterrolebinding modelops-prometheus-operator modelops-prometheus --ignore-not-found
}

case "${1:-install}" in
  build) build ;;
  install) install ;;
  up) up ;;
  ensure) ensure ;;
  urls) urls ;;
  uninstall) uninstall ;;
  *) die "usage: monitoring.sh build|install|up|ensure|urls|uninstall" ;;
esac
