#!/usr/bin/env bash
# Builds Dockerfile.inference offline-capable:
#   inference/build-image.sh wheels          download the image's wheels into .cache/wheels/inference
#                                            (only when constraints.txt or inference/pyproject.toml changed)
#   inference/build-image.sh [IMAGE]         wheels, the local base image, then docker build
#                                            (IMAGE defaults to modelops/inference:dev)
# BASE_IMAGE overrides the base (default local/python-base:bookworm, built by hack/base-image.sh).
source "$(dirname "$0")/../hack/lib.sh"
WHEELS="$CACHE/wheels/inference"

wheels() {
  local want stamp="$WHEELS/.stamp"
  want=$(cat "$ROOT/constraints.txt" "$ROOT/inference/pyproject.toml" | sha256sum | cut -c1-16)
  [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
  step "downloading the inference image's wheels into ${WHEELS#"$ROOT"/} (once per dependency change)"
  rm -rf "$WHEELS.tmp" && mkdir -p "$WHEELS.tmp"
  # setuptools: the image builds modelops-inference from source with --no-index.
  "$VENV/bin/pip" download -q --only-binary=:all: -c "$ROOT/constraints.txt" -d "$WHEELS.tmp" \
    "$ROOT/inference" "setuptools>=68"
  rm -f "$WHEELS.tmp"/modelops*  # the project itself comes from the source tree
  rm -rf "$WHEELS" && mv "$WHEELS.tmp" "$WHEELS"
  echo "$want" >"$stamp"
}

case "${1:-}" in
  wheels) wheels ;;
  *)
    image=${1:-modelops/inference:dev}
    wheels
    if [[ -z "${BASE_IMAGE:-}" ]]; then
      BASE_IMAGE=local/python-base:bookworm
      bash "$ROOT/hack/base-image.sh"
    fi
    step "docker build Dockerfile.inference -> $image (base $BASE_IMAGE)"
    docker build -q -f "$ROOT/Dockerfile.inference" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$image" "$ROOT" >/dev/null
    docker image inspect -f "{{.Size}}" "$image" | awk -v i="$image" '{printf "%s: %.0f MB\n", i, $1 / 1e6}'
    ;;
esac
