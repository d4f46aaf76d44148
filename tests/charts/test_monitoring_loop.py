"""The monitoring loop on the real cluster, every part real: the chart installed as a user installs it,
the local cluster's prometheus-operator, Prometheus and Alertmanager (hack/cluster/monitoring.sh) picking
up the chart's PodMonitor, PrometheusRule and AlertmanagerConfig unchanged, and the operator acting on
the alert:

    shifted traffic -> PSI recording rules -> ModelopsFeatureDrift firing in Alertmanager
    -> Alertmanager's webhook to the operator (Bearer token from the chart's Secret)
    -> the retraining Job (spec.retrain: the real training image, --promote-if-better)
    -> a better version registered, the alias moved -> exported, gated, rolled out -> Ready.

The first version is trained for 10 epochs, the retraining Job's for 30 with another seed: on the fixed
test split it scores test_f1 0.980 against 0.966 (deterministic on CPU), so the alias moves. The rule
window and `for` are the test's (1 minute, 0 s), the thresholds the chart's defaults.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest

from ..support import wait_until
from .conftest import CHART
from .test_cluster import (  # noqa: F401 (cluster, crds and namespace are the chart tests' fixtures)
    LOCAL_SETS,
    cluster,
    crd_args,
    crds,
    images_in_docker,
    kget,
    khelm,
    kubectl,
    namespace,
    port_forward,
)

pytestmark = pytest.mark.cluster

RELEASE, MD, MODEL = "loop", "loop", "breast-cancer"
MONITORING_NS = "monitoring"
INGRESS = "http://127.0.0.1:30080"
# the test's rule windows: PSI over the last minute, alerts as soon as the rule says so
TEST_WINDOWS = ["--set", "monitoring.drift.window=1m", "--set", "monitoring.drift.minSamples=100",
                "--set", "monitoring.alerts.featureDrift.for=0s", "--set", "monitoring.alerts.predictionDrift.for=0s",
                "--set", "monitoring.podMonitor.interval=5s", "--set", "monitoring.podMonitor.scrapeTimeout=4s",
                "--set", "operator.aliasPollSeconds=5"]
RETRAIN_ARGS = ["--dataset", "breast_cancer", "--epochs", "30", "--seed", "1", "--register", MODEL,
                "--alias", "champion", "--promote-if-better", "test_f1", "--no-progress"]


def monitoring_stack() -> None:
    res = kubectl("-n", MONITORING_NS, "get", "prometheus,alertmanager", "-o", "name", check=False)
    assert res.returncode == 0 and res.stdout.split(), (
        "no Prometheus and Alertmanager in namespace monitoring: the local cluster installs them "
        f"(hack/cluster/monitoring.sh, make cluster-up). {res.stderr.strip()}")


def shifted_traffic(host: str, stop: threading.Event, sent: list[int]) -> None:
    """~20 requests/s of 4 breast-cancer rows each, every feature scaled by 1.5: far outside the
    training split's deciles, as a changed upstream unit or sensor would put it."""
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data.astype(np.float32) * 1.5
    rng = np.random.default_rng(0)
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            rows = x[rng.choice(len(x), 4)]
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                                "data": rows.ravel().tolist()}]}
            try:
                r = client.post(f"{INGRESS}/v2/models/{MD}/infer", json=body, headers={"Host": host})
                sent[r.status_code == 200] += 1
            except httpx.HTTPError:
                sent[0] += 1
            time.sleep(0.05)


def alerts(ns: str) -> list[dict]:
    """The drift alerts Alertmanager holds for this namespace (its API through the API server's proxy)."""
    raw = kubectl("get", "--raw", f"/api/v1/namespaces/{MONITORING_NS}/services/alertmanager-operated:9093"
                  "/proxy/api/v2/alerts?filter=alertname%3D~%22Modelops.*Drift%22").stdout
    return [a for a in json.loads(raw) if a["labels"].get("namespace") == ns]


def test_shifted_traffic_raises_drift_and_a_better_retrained_version_rolls_out(crds, namespace):  # noqa: F811
    from modelops_training.registry import set_alias
    from modelops_training.train import TrainConfig, train

    images_in_docker()
    monitoring_stack()
    khelm("install", RELEASE, str(CHART), "-n", namespace, *LOCAL_SETS, *TEST_WINDOWS, *crd_args(),
          "--wait", "--timeout", "8m")
    host = f"{MD}.{namespace}.modelops.test"
    try:
        with port_forward(namespace, f"{RELEASE}-modelops-mlflow", 5000) as mlflow_url:
            first = train(TrainConfig(dataset="breast_cancer", epochs=10, seed=0, register=MODEL,
                                      progress=False, tracking_uri=mlflow_url))
            set_alias(MODEL, "champion", first.version, tracking_uri=mlflow_url)
        manifest = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                    "metadata": {"name": MD, "namespace": namespace},
                    "spec": {"model": {"name": MODEL, "alias": "champion"},
                             "serving": {"imagePullPolicy": "Never"},
                             "ingress": {"host": host, "path": "/"},
                             "rollout": {"progressDeadlineSeconds": 300},
                             "retrain": {"cooldownSeconds": 3600, "template": {"spec": {"containers": [{
                                 "name": "train", "image": "modelops/training:dev", "imagePullPolicy": "Never",
                                 "command": ["modelops-train"], "args": RETRAIN_ARGS}]}}}}}
        kubectl("apply", "-f", "-", stdin=json.dumps(manifest))

        def phase_is(version: str):
            def check():
                status = kget("-n", namespace, "modeldeployment", MD).get("status") or {}
                assert status.get("phase") not in ("Failed", "RolledBack"), status
                return status if (status.get("phase"), status.get("modelVersion")) == ("Ready", version) else None
            return check

        wait_until(f"{MD} Ready on version {first.version}", phase_is(str(first.version)), timeout=420, interval=3)

        stop, sent = threading.Event(), [0, 0]
        sender = threading.Thread(target=shifted_traffic, args=(host, stop, sent), daemon=True)
        started = time.monotonic()
        sender.start()
        try:
            firing = wait_until("ModelopsFeatureDrift firing in Alertmanager", lambda: [
                a for a in alerts(namespace) if a["labels"]["alertname"] == "ModelopsFeatureDrift"
                and a["status"]["state"] == "active"], timeout=240, interval=5)
            alert_after = time.monotonic() - started
            assert all(a["labels"]["model_name"] == MD for a in firing)

            def retrain_job():
                jobs = kget("-n", namespace, "jobs", "-l", f"modelops.io/retrain-of={MD}")["items"]
                return jobs or None

            [job] = wait_until("the retraining Job", retrain_job, timeout=120, interval=2)
            job_after = time.monotonic() - started
        finally:
            stop.set()
            sender.join(10)
        assert sent[1] > 0, f"no request answered: {sent}"
        name = job["metadata"]["name"]

        def recorded():  # the Job is created before status records it
            retrain = (kget("-n", namespace, "modeldeployment", MD).get("status") or {}).get("retrain") or {}
            return retrain if retrain.get("lastJob", {}).get("name") == name else None

        retrain = wait_until("status.retrain recording the Job", recorded, timeout=30)
        assert retrain["lastTrigger"]["source"] == "alert", retrain
        assert "Drift" in retrain["lastTrigger"]["alert"], retrain

        def job_ended():
            status = kget("-n", namespace, "job", name).get("status", {})
            return status if status.get("succeeded") or status.get("failed") else None

        ended = wait_until(f"the retraining Job {name} to end", job_ended, timeout=600, interval=3)
        assert ended.get("succeeded") == 1, (ended, kubectl("-n", namespace, "logs", f"job/{name}", check=False).stdout)
        with port_forward(namespace, f"{RELEASE}-modelops-mlflow", 5000) as mlflow_url:
            from mlflow import MlflowClient

            champion = MlflowClient(mlflow_url).get_model_version_by_alias(MODEL, "champion").version
        second = str(int(first.version) + 1)
        assert champion == second, f"the retrained version {second} did not move champion (still {champion})"
        wait_until(f"{MD} Ready on the retrained version {second}", phase_is(second), timeout=600, interval=3)
        print(f"alert after {alert_after:.0f} s, Job after {job_after:.0f} s, version {second} Ready after "
              f"{time.monotonic() - started:.0f} s of shifted traffic ({sent[1]} answered, {sent[0]} failed)")
    finally:
        kubectl("-n", namespace, "delete", "modeldeployment", MD, "--wait=true", check=False, timeout=120)
        khelm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "3m", check=False)
