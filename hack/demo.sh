#!/usr/bin/env bash
# make demo: from a fresh machine to predictions through the ingress, then a broken version rolled back.
#   tools -> local Kubernetes (or the cluster in KUBECONFIG, or CLUSTER=kind) -> images -> helm install
#   -> train two versions in the chart's MLflow -> apply examples/modeldeployment.yaml -> predictions
#   -> champion alias moved to a plausible bad version (confident, 20 % of answers flipped: it exports and
#   passes its own parity and smoke checks) -> refused by the behaviour verdict, with its evidence, while
#   the endpoint keeps answering from the good version -> shifted traffic -> the drift alert firing in the
#   local Prometheus and Alertmanager -> the operator's retraining Job -> the new version rolled out only
#   when it scores better (the loop's steps need the local monitoring stack: MODELOPS_MONITORING=1).
# Idempotent: run it again and it upgrades the release and trains new versions. `make demo-down` undoes it.
source "$(dirname "$0")/lib.sh"
RELEASE=modelops NS=modelops-system APP_NS=modelops-demo MODEL=breast-cancer
DEMO="$DATA/demo"
INGRESS="http://127.0.0.1:${MODELOPS_INGRESS_PORT:-30080}" HOST="$MODEL.modelops.localhost"  # Traefik routes by Host
mkdir -p "$DEMO"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

step "1/10 tools: venv, docker, helm, kubectl (first run downloads torch and builds the cluster: ~20 min)"
bash "$ROOT/hack/setup.sh"
bash "$ROOT/hack/docker.sh"

step "2/10 cluster"
MODELOPS_MONITORING_WAIT=0 bash "$ROOT/hack/cluster/up.sh"
[[ -z "${KUBECONFIG:-}" && -f "$DATA/cluster/kubeconfig" ]] && export KUBECONFIG="$DATA/cluster/kubeconfig"

step "3/10 images: modelops/inference:dev, modelops/operator:dev and modelops/training:dev, loaded into the cluster"
bash "$ROOT/hack/cluster/images.sh" project
# The local cluster's Prometheus and Alertmanager (cluster-up installs them meanwhile; a cluster started
# with MODELOPS_MONITORING=0 or before they existed gets them here). Another cluster keeps its own.
monitoring=""
if [[ "${MODELOPS_MONITORING:-1}" != 0 && "${KUBECONFIG:-}" == "$DATA/cluster/kubeconfig" ]]; then
  bash "$ROOT/hack/cluster/monitoring.sh" ensure
  monitoring=$(bash "$ROOT/hack/cluster/monitoring.sh" urls)
fi

step "4/10 helm upgrade --install $RELEASE charts/modelops (operator, MLflow, dashboards, alerts)"
kubectl apply --server-side --force-conflicts -f "$ROOT/crds" >/dev/null  # Helm never upgrades CRDs itself
# ModelDeployments' HTTPRoutes (canary releases) attach to the cluster's shared Gateway (hack/cluster/README.md)
gateway=(--set operator.gateway.namespace=kube-system --set operator.gateway.name=modelops --set operator.gateway.sectionName=web)
if ! kubectl -n kube-system get gateway modelops >/dev/null 2>&1; then
  step "this cluster has no Gateway kube-system/modelops: the operator gets no default Gateway (operator.gateway)"
  gateway=()
fi
# the demo's drift windows, short so that step 9 takes minutes, not the defaults' 10 min window and 5 min `for`
demo_windows=(--set monitoring.drift.window=2m --set monitoring.alerts.featureDrift.for=0s
  --set monitoring.alerts.predictionDrift.for=0s --set monitoring.alertmanagerConfig.groupWait=10s
  --set monitoring.podMonitor.interval=10s)
helm upgrade --install "$RELEASE" "$ROOT/charts/modelops" -n "$NS" --create-namespace \
  --set operator.image.tag=dev --set operator.servingImage.tag=dev --set exportImage.tag=dev \
  --set operator.aliasPollSeconds=5 "${gateway[@]}" \
  --set mlflow.persistence.enabled=false "${demo_windows[@]}" --wait --timeout 10m
kubectl get pods -n "$NS"

step "5/10 train two versions of the $MODEL MLP in the chart's MLflow (champion = the better one)"
mlflow_port=${MODELOPS_DEMO_MLFLOW_PORT:-15000}
kubectl -n "$NS" port-forward "svc/$RELEASE-mlflow" "$mlflow_port:5000" >"$DEMO/port-forward.log" 2>&1 &
pids+=($!)
wait_for 60 "MLflow through port-forward" curl -sf "http://127.0.0.1:$mlflow_port/health"
export MLFLOW_TRACKING_URI="http://127.0.0.1:$mlflow_port"
modelops-train --dataset breast_cancer --epochs 10 --seed 0 --register "$MODEL" --alias champion \
  --promote-if-better test_f1 --no-progress
modelops-train --dataset breast_cancer --epochs 30 --seed 1 --register "$MODEL" --alias champion \
  --promote-if-better test_f1 --no-progress

step "6/10 kubectl apply -f examples/modeldeployment.yaml (export, parity gate, rollout, smoke checks)"
kubectl create namespace "$APP_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$APP_NS" -f "$ROOT/examples/modeldeployment.yaml"
champion=$(python - <<'PY'
from mlflow import MlflowClient
print(MlflowClient().get_model_version_by_alias("breast-cancer", "champion").version)
PY
)
wait_for 300 "$MODEL Ready on version $champion" bash -c "[[ \$(kubectl get mdep $MODEL -n $APP_NS \
  -o jsonpath='{.status.phase}/{.status.modelVersion}') == Ready/$champion ]]"
kubectl get mdep -n "$APP_NS"

step "7/10 predictions through the ingress ($INGRESS, Host: $HOST)"
predict() {
  python - "$INGRESS" "$HOST" "$MODEL" <<'PY'
import sys, httpx, numpy as np
from sklearn.datasets import load_breast_cancer
url, host, name = sys.argv[1:]
d = load_breast_cancer(); rows = np.random.default_rng(7).choice(len(d.data), 8, replace=False)
x = d.data[rows].astype(np.float32)
r = httpx.post(f"{url}/v2/models/{name}/infer", headers={"Host": host}, timeout=10, json={"inputs": [
    {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]})
r.raise_for_status()
body = r.json(); p = np.asarray(body["outputs"][0]["data"]).reshape(len(x), -1)
print(f"  answered by version {body['model_version']}")
for i, (pred, label) in enumerate(zip(p.argmax(1), d.target[rows])):
    mark = "ok" if pred == label else "WRONG"
    print(f"  row {rows[i]:>3}: predicted {d.target_names[pred]:<9} ({p[i].max():.2f})  expected {d.target_names[label]:<9} {mark}")
PY
}
predict

step "8/10 move champion to a plausible bad version: the behaviour verdict must refuse it"
# confident answers, a fifth of them flipped: the export's parity gate and the smoke checks pass it
modelops-train --dataset breast_cancer --epochs 30 --seed 2 --register "$MODEL" --sabotage flip=0.2 --no-progress
broken=$(python -c "from mlflow import MlflowClient
print(max(int(v.version) for v in MlflowClient().search_model_versions(\"name='$MODEL'\")))")
# a client hitting the endpoint all along: every answer must come from the good version
python - "$INGRESS" "$HOST" "$MODEL" "$DEMO/traffic.json" <<'PY' &
import json, sys, time, httpx
url, host, name, out = sys.argv[1:]
seen, failed, deadline = {}, 0, time.time() + 600
x = [[14.0, 20.0, 90.0, 600.0, 0.1, 0.1, 0.1, 0.05, 0.2, 0.06] * 3]
while time.time() < deadline:
    try:
        r = httpx.post(f"{url}/v2/models/{name}/infer", headers={"Host": host}, timeout=5, json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": [1, 30], "data": x[0]}]})
        ok = r.status_code == 200 and None not in r.json()["outputs"][0]["data"]  # null: NaN in JSON
        version = r.json().get("model_version") if r.status_code == 200 else str(r.status_code)
        seen[version] = seen.get(version, 0) + 1
        failed += not ok
    except httpx.HTTPError:
        failed += 1
    json.dump({"answers_by_version": seen, "failed": failed}, open(out, "w"))
    time.sleep(0.1)
PY
pids+=($!)
python - <<PY
from mlflow import MlflowClient
MlflowClient().set_registered_model_alias("$MODEL", "champion", "$broken")
print("  champion -> version $broken (flips 20 % of its answers)")
PY
wait_for 300 "the rollback of version $broken" bash -c "[[ \$(kubectl get mdep $MODEL -n $APP_NS \
  -o jsonpath='{.status.phase}/{.status.targetModelVersion}') == RolledBack/$broken ]]"
kill "${pids[-1]}" 2>/dev/null || true
kubectl get mdep -n "$APP_NS"
echo "  why (kubectl modelops status: the verdict's numbers and thresholds are in status.analysis):"
kubectl modelops status "$MODEL" -n "$APP_NS" | sed 's/^/    /'
echo "  the last attempts (kubectl modelops history):"
kubectl modelops history "$MODEL" -n "$APP_NS" | sed 's/^/    /'
echo "  the registry's record of it (MLflow tags on version $broken):"
python - <<PY
from mlflow import MlflowClient
tags = MlflowClient().get_model_version("$MODEL", "$broken").tags
print(f"    modelops.verdict={tags.get('modelops.verdict')}  modelops.verdict_reason={tags.get('modelops.verdict_reason', '')[:110]}")
PY
echo "  events:"
kubectl get events -n "$APP_NS" --field-selector "involvedObject.name=$MODEL" --sort-by=.lastTimestamp \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message | tail -6 | cut -c1-140 | sed 's/^/    /'
echo "  the endpoint during the attempt: $(cat "$DEMO/traffic.json")"
predict

cooldown_until=$(kubectl get mdep "$MODEL" -n "$APP_NS" -o jsonpath='{.status.retrain.nextAllowedAt}')
if [[ -n "$cooldown_until" ]] && (($(date -d "$cooldown_until" +%s) > $(date +%s))); then
  step "9-10/10 skipped: retraining is in its cooldown until $cooldown_until (an earlier run's Job; spec.retrain.cooldownSeconds)"
  monitoring_loop=0
fi
if [[ -n "$monitoring" && "${monitoring_loop:-1}" == 1 ]]; then
# after the rollback, champion goes back to the version that serves (what its owner would do): the
# retraining Job's --promote-if-better then compares with the serving version, not the refused one
serving=$(kubectl get mdep "$MODEL" -n "$APP_NS" -o jsonpath='{.status.modelVersion}')
python - <<PY
from mlflow import MlflowClient
MlflowClient().set_registered_model_alias("$MODEL", "champion", "$serving")
print("  champion -> version $serving again (the serving one)")
PY
last_retrain_job() { kubectl get mdep "$MODEL" -n "$APP_NS" -o jsonpath='{.status.retrain.lastJob.name}'; }
previous_job=$(last_retrain_job)
step "9/10 shifted traffic: every feature x1.5 (a unit changed upstream), ~20 requests/s, against the training reference"
# the rows the model was trained on, scaled: the PSI recording rules (2 min window here) see every
# feature leave its training deciles, Prometheus fires ModelopsFeatureDrift, Alertmanager routes it to
# the operator's webhook (the chart's AlertmanagerConfig, Bearer token), which starts spec.retrain's Job
python - "$INGRESS" "$HOST" "$MODEL" "$DEMO/shifted.json" <<'PY' &
import json, sys, time, httpx, numpy as np
from sklearn.datasets import load_breast_cancer
url, host, name, out = sys.argv[1:]
x = load_breast_cancer().data.astype(np.float32) * 1.5
rng, sent, failed, deadline = np.random.default_rng(1), 0, 0, time.time() + 1200
while time.time() < deadline:
    rows = x[rng.choice(len(x), 1)]
    try:
        r = httpx.post(f"{url}/v2/models/{name}/infer", headers={"Host": host}, timeout=5, json={"inputs": [
            {"name": "input", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}]})
        failed += r.status_code != 200
    except httpx.HTTPError:
        failed += 1
    sent += 1
    json.dump({"sent": sent, "failed": failed}, open(out, "w"))
    time.sleep(0.05)
PY
pids+=($!)
alertmanager="http://127.0.0.1:${MODELOPS_ALERTMANAGER_PORT:-30093}"
drift_alerts() {
  curl -sfG "$alertmanager/api/v2/alerts" --data-urlencode 'filter=alertname="ModelopsFeatureDrift"' \
    --data-urlencode "filter=namespace=\"$APP_NS\"" --data-urlencode 'active=true'
}
drift_firing() { [[ $(drift_alerts) == '[{'* ]]; }
wait_for 360 "ModelopsFeatureDrift firing in Alertmanager ($alertmanager)" drift_firing
echo "  firing in Alertmanager ($alertmanager/api/v2/alerts):"
python - "$(drift_alerts)" <<'PY'
import json, sys
alerts = sorted(json.loads(sys.argv[1]), key=lambda a: (a["labels"]["severity"], a["labels"].get("feature", "")))
for a in alerts[:5]:
    print(f"    {a['labels']['alertname']} {a['labels']['severity']:<8} {a['annotations'].get('summary', '')[:110]}")
print(f"    ({len(alerts)} in all: one per drifting feature and severity)")
PY

step "10/10 the retraining Job (spec.retrain), then the new version rolled out only if it scores better"
retrain_job() { [[ $(last_retrain_job) != "$previous_job" ]]; }
wait_for 180 "a new retraining Job in status.retrain.lastJob (an earlier run's cooldown: kubectl modelops status)" retrain_job
job=$(last_retrain_job)
echo "  status.retrain.lastTrigger: $(kubectl get mdep "$MODEL" -n "$APP_NS" -o jsonpath='{.status.retrain.lastTrigger}')"
kubectl get job "$job" -n "$APP_NS"
job_ended() { [[ -n $(kubectl get job "$job" -n "$APP_NS" -o jsonpath='{.status.succeeded}{.status.failed}') ]]; }
wait_for 900 "the retraining Job $job to end" job_ended
kubectl logs -n "$APP_NS" "job/$job" --tail=4 | sed 's/^/    /'
echo "  status.retrain.lastJob: $(kubectl get mdep "$MODEL" -n "$APP_NS" -o jsonpath='{.status.retrain.lastJob}')"
champion=$(python - <<'PY'
from mlflow import MlflowClient
print(MlflowClient().get_model_version_by_alias("breast-cancer", "champion").version)
PY
)
if [[ "$champion" != "$serving" ]]; then
  wait_for 600 "$MODEL Ready on the retrained version $champion" bash -c "[[ \$(kubectl get mdep $MODEL -n $APP_NS \
    -o jsonpath='{.status.phase}/{.status.modelVersion}') == Ready/$champion ]]"
  echo "  retrained version $champion scored better: champion moved, exported, gated and rolled out (was $serving)"
else
  echo "  the retrained version did not score better: champion stays, version $serving keeps serving"
fi
kill "${pids[-1]}" 2>/dev/null || true
kubectl get mdep -n "$APP_NS"
echo "  shifted traffic: $(cat "$DEMO/shifted.json")"
elif [[ -z "$monitoring" ]]; then
  step "9-10/10 skipped: the drift alert and retraining need the local monitoring stack (MODELOPS_MONITORING=1, the local cluster)"
fi

cat <<EOF

Done. modelops serves $MODEL@champion at http://$HOST:${MODELOPS_INGRESS_PORT:-30080}/v2/models/$MODEL/infer
  try it:      curl -s -H 'Host: $HOST' $INGRESS/v2/models/$MODEL
  KUBECONFIG:  export KUBECONFIG=${KUBECONFIG:-~/.kube/config}
  status:      kubectl get mdep -A ; kubectl describe mdep $MODEL -n $APP_NS
  MLflow UI:   kubectl -n $NS port-forward svc/$RELEASE-mlflow 5000 ; open http://127.0.0.1:5000
  metrics:     kubectl -n $NS port-forward svc/$RELEASE-operator 8081:api ; curl 127.0.0.1:8081/metrics
  Prometheus:  the chart's ServiceMonitor/PodMonitor/PrometheusRule are created where the Prometheus
               Operator runs (here: the local stack below; elsewhere kube-prometheus-stack); README
               "Dashboards and alerts" lists every query
${monitoring:-  monitoring:  off (MODELOPS_MONITORING=0, or not the local cluster)}
  dashboards:  ConfigMaps labelled grafana_dashboard=1 in $NS (the Grafana sidecar loads them), or
               import charts/modelops/dashboards/*.json into any Grafana
  clean up:    make demo-down   (uninstalls the release, deletes $APP_NS, stops the local cluster)
EOF
