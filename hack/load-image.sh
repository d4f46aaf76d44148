#!/usr/bin/env bash
# hack/load-image.sh IMAGE...: makes local docker images available to the cluster's nodes.
#   local cluster (make cluster-up): imported into its containerd (docker save | ctr import)
#   kind (context kind-*):            kind load docker-image
#   any other cluster:                pushed to $IMAGE_REGISTRY (retagged REGISTRY/IMAGE)
# Pods must not pull them: use a tag other than :latest, or imagePullPolicy: IfNotPresent/Never.
source "$(dirname "$0")/lib.sh"
source "$ROOT/hack/cluster/env.sh"
(($#)) || die "usage: hack/load-image.sh IMAGE..."
bash "$ROOT/hack/docker.sh"

# discard_unpacked_layers REF: the import unpacked REF's layers into snapshots, which is all that
# containers start from; their blobs would hold the image a second time (5 GB for the operator).
# What containerd 1.7's `ctr import --discard-unpacked-layers` does, for Debian's 1.6.
discard_unpacked_layers() {
  local manifest
  manifest=$("${CTR[@]}" images ls "name==$1" | awk 'NR == 2 {print $3}')
  "${CTR[@]}" content get "$manifest" |
    python3 -c 'import json, sys; print(*(l["digest"] for l in json.load(sys.stdin)["layers"]))' |
    xargs -r "${CTR[@]}" content rm >/dev/null
}

if [[ -S "$CTR_SOCK" ]] && "${CTR[@]}" version >/dev/null 2>&1 &&
  [[ -z "${KUBECONFIG:-}" || "$KUBECONFIG" == "$KUBECONFIG_OUT" ]]; then
  # One load at a time: images share their base layers, and discard_unpacked_layers of one load
  # removed a blob that a concurrent import had found present and skipped ("failed to resolve
  # layers ... not found"), when the monitoring stack loaded its images beside the project's.
  exec {load_lock}>"$C/load-image.lock"
  flock "$load_lock"
  for image in "$@"; do
    id=$(docker image inspect -f '{{.Id}}' "$image") || die "no docker image $image"
    ref="docker.io/$image"
    [[ "$image" == */*.*/* || "$image" == *.*/* ]] && ref=$image # already has a registry host
    # skip an image containerd already holds with the same docker image ID
    old=$("${CTR[@]}" images ls "name==$ref" 2>/dev/null | grep -o 'modelops.image-id=sha256:[0-9a-f]*' || true)
    [[ "$old" == "modelops.image-id=$id" ]] && continue
    step "loading $image into the local cluster"
    docker save "$image" | "${CTR[@]}" images import - >/dev/null
    "${CTR[@]}" images label "$ref" "modelops.image-id=$id" >/dev/null
    discard_unpacked_layers "$ref"
    # the import also names the image by its ID: drop the replaced one's, or every rebuild stays on disk
    [[ -n "$old" ]] && "${CTR[@]}" images rm "${old#modelops.image-id=}" >/dev/null 2>&1 || true
  done
elif [[ "$(kubectl config current-context 2>/dev/null)" == kind-* ]]; then
  name=$(kubectl config current-context) && name=${name#kind-}
  for image in "$@"; do kind load docker-image --name "$name" "$image"; done
elif [[ -n "${IMAGE_REGISTRY:-}" ]]; then
  for image in "$@"; do
    docker tag "$image" "$IMAGE_REGISTRY/$image" && docker push "$IMAGE_REGISTRY/$image"
    step "pushed $IMAGE_REGISTRY/$image: refer to it by that name in manifests"
  done
else
  die "no local cluster, no kind context and no IMAGE_REGISTRY: cannot load $*"
fi
