#!/usr/bin/env bash
# The local demo until the cluster demo (issue 7) lands: train and register two versions in the
# embedded MLflow, export the champion to ONNX behind the parity gate, serve it and predict.
source "$(dirname "$0")/lib.sh"
bash "$ROOT/hack/setup.sh"
step "train two versions of the breast-cancer MLP (alias champion)"
modelops-train --dataset breast_cancer --epochs 10 --seed 0 --register demo-cancer --alias champion
modelops-train --dataset breast_cancer --epochs 20 --seed 1 --register demo-cancer --alias champion \
  --promote-if-better test_f1
step "export models:/demo-cancer@champion to ONNX (parity gate)"
modelops-export "models:/demo-cancer@champion" --out "$DATA/demo-export"
step "serve it and predict"
modelops-serve --model-uri "$DATA/demo-export" --model-name demo-cancer --port 18080 --host 127.0.0.1 &
pid=$!; trap 'kill $pid 2>/dev/null' EXIT
wait_for 60 "modelops-serve" curl -sf http://127.0.0.1:18080/v2/health/ready
python - <<'PY'
import httpx, numpy as np
from sklearn.datasets import load_breast_cancer
d = load_breast_cancer(); x = d.data[:8].astype(np.float32)
r = httpx.post("http://127.0.0.1:18080/v2/models/demo-cancer/infer",
               json={"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]})
p = np.asarray(r.json()["outputs"][0]["data"]).reshape(len(x), -1)
for pred, label in zip(p.argmax(1), d.target[:8]):
    print(f"predicted {d.target_names[pred]:<10} expected {d.target_names[label]}")
PY
