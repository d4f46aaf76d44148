#!/usr/bin/env bash
# Images without a registry, built with the local docker engine and loaded into the cluster.
#   images.sh cluster   the cluster's own images: pause, kube (the multi-call binary: CoreDNS,
#                       metrics-server), traefik, and the Debian bookworm + Python 3.11 base image
#   images.sh project   the project's Dockerfile.inference / .operator / .training, built FROM that
#                       base by hack/build-image.sh (offline wheel caches) as modelops/inference:dev,
#                       modelops/operator:dev and modelops/training:dev, then loaded into the cluster
source "$(dirname "$0")/../lib.sh"
source "$ROOT/hack/cluster/env.sh"
bash "$ROOT/hack/docker.sh"

# binary_image IMAGE BINARY: a FROM-scratch image holding one static binary as its entrypoint
binary_image() {
  local image=$1 bin=$2 tmp name
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  name=$(basename "$bin")
  tmp=$(mktemp -d)
  mkdir -p "$tmp/tmp" "$tmp/etc" && chmod 1777 "$tmp/tmp"
  cp "$bin" "$tmp/$name"
  printf 'root:x:0:0:root:/:/%s\nnobody:x:65534:65534:nobody:/:/%s\n' "$name" "$name" >"$tmp/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$tmp/etc/group"
  tar -C "$tmp" -c . | docker import -c "ENTRYPOINT [\"/$name\"]" - "$image" >/dev/null
  rm -rf "$tmp"
}

case "${1:-cluster}" in
  cluster)
    images=("$PAUSE_IMAGE" "$(kube_image)" "$BASE_IMAGE")
    has_addon traefik && images+=("$(traefik_image)")
    step "cluster images: ${images[*]}"
    binary_image "$PAUSE_IMAGE" "$(pause_bin)"
    binary_image "$(kube_image)" "$(kube_bin)"
    has_addon traefik && binary_image "$(traefik_image)" "$(traefik_bin)"
    bash "$ROOT/hack/base-image.sh"
    bash "$ROOT/hack/load-image.sh" "${images[@]}"
    ;;
  project)
    # Dockerfiles take their base image as a build ARG; the local cluster passes the local base.
    built=()
    for kind in inference operator training; do
      image="${IMAGE_PREFIX:-modelops}/$kind:${IMAGE_TAG:-dev}"
      BASE_IMAGE=$BASE_IMAGE bash "$ROOT/hack/build-image.sh" "$kind" "$image"
      built+=("$image")
    done
    bash "$ROOT/hack/load-image.sh" "${built[@]}"
    ;;
  *) die "usage: images.sh cluster|project" ;;
esac
