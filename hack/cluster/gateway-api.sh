#!/usr/bin/env bash
# The Gateway API's standard channel (CRDs and the upstream safe-upgrades ValidatingAdmissionPolicy)
# at $GATEWAY_API_VERSION, from the Go module sigs.k8s.io/gateway-api (config/crd/standard/).
#   gateway-api.sh fetch     download it once (Go module proxy) into .cache/gateway-api/<version>/
#   gateway-api.sh install   fetch, then server-side apply to the cluster in KUBECONFIG unless every
#                            object is already there at this version; waits until the CRDs are Established
#   gateway-api.sh dir       fetch, then print the folder of the YAML
# The module comes through the Go module proxy like the cluster's binaries; its YAML is copied to
# .cache/gateway-api/<version>/, so build.sh cleaning Go's module cache never costs a download again.
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/versions.sh"
MODULE=sigs.k8s.io/gateway-api
DIR="$CACHE/gateway-api/$GATEWAY_API_VERSION"

fetch() {
  [[ -e "$DIR/.complete" ]] && return 0
  command -v go >/dev/null || die "go is not installed: needed to fetch $MODULE@$GATEWAY_API_VERSION from the Go module proxy"
  step "Gateway API $GATEWAY_API_VERSION CRDs from the Go module proxy (once; cached in ${DIR#"$ROOT"/})"
  local src tmp
  src=$(module_dir "$MODULE" "$GATEWAY_API_VERSION")/config/crd/standard
  [[ -d "$src" ]] || die "$MODULE@$GATEWAY_API_VERSION has no config/crd/standard"
  mkdir -p "$(dirname "$DIR")"
  tmp=$(mktemp -d "$DIR.XXXXXX")
  cp "$src"/*.yaml "$tmp"/ && chmod -R u+w,go+rX "$tmp" # the module cache is read-only
  touch "$tmp/.complete"
  rm -rf "$DIR" && mv "$tmp" "$DIR"
}

# installed: every object of the folder exists and carries this bundle version
installed() {
  local versions
  versions=$(kubectl get -f "$DIR" -o jsonpath='{range .items[*]}{.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}{"\n"}{end}' 2>/dev/null) ||
    return 1
  [[ -n "$versions" ]] && ! grep -qvx "$GATEWAY_API_VERSION" <<<"$versions"
}

install() {
  fetch
  if installed; then return 0; fi
  step "Gateway API $GATEWAY_API_VERSION (standard channel) into the cluster"
  kubectl apply --server-side --force-conflicts --field-manager modelops-cluster -f "$DIR" >/dev/null
  local crds
  crds=$(kubectl get -f "$DIR" -o name | grep '^customresourcedefinition')
  # shellcheck disable=SC2086 # one argument per CRD
  kubectl wait --for condition=Established --timeout 60s $crds >/dev/null
}

case "${1:-install}" in
  fetch) fetch ;;
  install) install ;;
  dir) fetch && echo "$DIR" ;;
  *) die "usage: gateway-api.sh fetch|install|dir" ;;
esac
