"""Retraining against the real cluster: the operator as a process, Alertmanager's webhook call with the
token, `kubectl modelops retrain`, and a real Job (a trivial command in the training image).

The ModelDeployment names a model MLflow does not have: its reconcile settles at once (VersionNotFound),
and retraining is independent of what serves, so no model needs training or exporting here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from modelops_operator import retrain

from ..support import wait_until
from .conftest import EXPORT_IMAGE, KUBECONFIG, ROOT, Operator, kget, kubectl

pytestmark = pytest.mark.cluster
TOKEN = uuid.uuid4().hex
NAME = "drifty"
PATH = os.pathsep.join([str(Path(sys.executable).parent), str(ROOT / ".tools/bin"), os.environ["PATH"]])


@pytest.fixture(scope="module")
def operator(registry, namespace, tmp_path_factory):
    """No trained versions needed (conftest's operator waits for them)."""
    op = Operator(registry, tmp_path_factory.mktemp("operator"), MODELOPS_WATCH_NAMESPACE=namespace,
                  MODELOPS_ALERT_WEBHOOK_TOKEN=TOKEN)
    op.start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def deployment(operator, namespace) -> str:
    manifest = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": NAME, "namespace": namespace},
                "spec": {"model": {"name": f"no-such-model-{uuid.uuid4().hex[:6]}", "alias": "champion"},
                         "retrain": {"cooldownSeconds": 3600, "template": {"spec": {"containers": [{
                             "name": "train", "image": EXPORT_IMAGE,
                             "command": ["sh", "-c", "echo \"retraining $MODELOPS_MODEL_NAME@$MODELOPS_ALIAS: "
                                                     "$MODELOPS_RETRAIN_TRIGGER\"; sleep 2"]}]}}}}}
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    wait_until("the reconcile to settle", lambda: (status(namespace).get("phase") == "Failed"), timeout=60)
    return NAME


def status(namespace: str) -> dict:
    return (kget("modeldeployment", NAME, namespace) or {}).get("status") or {}


def retrain_jobs(namespace: str) -> list[str]:
    out = kubectl("get", "jobs", "-n", namespace, "-l", f"modelops.io/retrain-of={NAME}", "-o", "json").stdout
    return sorted(j["metadata"]["name"] for j in json.loads(out)["items"])


def events(namespace: str, reason: str) -> list[str]:
    out = kubectl("get", "events", "-n", namespace, "--field-selector",
                  f"involvedObject.name={NAME},reason={reason}", "-o", "json").stdout
    return [e["message"] for e in json.loads(out)["items"]]


def annotations(namespace: str) -> dict:
    return (kget("modeldeployment", NAME, namespace) or {})["metadata"].get("annotations") or {}


def notify(operator: Operator, namespace: str, token: str | None = TOKEN, **labels: str) -> httpx.Response:
    payload = {"version": "4", "status": "firing", "receiver": "modelops", "groupLabels": {}, "commonLabels": {},
               "alerts": [{"status": "firing", "fingerprint": "f1", "labels": {
                   "alertname": "ModelopsFeatureDrift", "namespace": namespace, "model_name": NAME,
                   "feature": "mean radius", "severity": "critical", **labels}}]}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"http://127.0.0.1:{operator.api_port}/webhooks/alertmanager", json=payload, headers=headers,
                      timeout=10)


def test_an_alert_without_the_token_is_refused_and_starts_nothing(operator, deployment, namespace):
    assert notify(operator, namespace, token=None).status_code == 401
    assert notify(operator, namespace, token="wrong").status_code == 401
    assert retrain_jobs(namespace) == []
    assert TOKEN not in operator.log_path.read_text()


def test_an_alert_with_the_token_starts_exactly_one_job(operator, deployment, namespace):
    res = notify(operator, namespace)
    assert (res.status_code, res.json()) == (200, {"accepted": True, "triggered": [f"{namespace}/{NAME}"],
                                                   "ignored": 0})
    wait_until("RetrainStarted", lambda: events(namespace, "RetrainStarted"), timeout=30)
    assert retrain_jobs(namespace) == [f"{NAME}-retrain-1"]
    retrain = status(namespace)["retrain"]
    assert retrain["lastTrigger"]["source"] == "alert" and retrain["lastTrigger"]["alert"] == "ModelopsFeatureDrift"
    assert retrain["lastJob"]["name"] == f"{NAME}-retrain-1" and retrain["nextAllowedAt"]


def test_a_second_alert_within_the_cooldown_is_accepted_and_not_recorded(operator, deployment, namespace):
    first, recorded = status(namespace)["retrain"]["lastAlertId"], annotations(namespace)[retrain.ALERT_ANNOTATION]
    res = notify(operator, namespace)
    assert (res.status_code, res.json()) == (200, {"accepted": True, "triggered": [], "ignored": 1})
    assert annotations(namespace)[retrain.ALERT_ANNOTATION] == recorded  # no write, no reconcile, no Event
    assert status(namespace)["retrain"]["lastAlertId"] == first
    assert events(namespace, "RetrainSkipped") == [] and retrain_jobs(namespace) == [f"{NAME}-retrain-1"]


def test_an_alert_about_a_version_not_served_is_ignored(operator, deployment, namespace):
    res = notify(operator, namespace, model_version="7")  # this ModelDeployment serves no version
    assert (res.status_code, res.json()) == (200, {"accepted": True, "triggered": [], "ignored": 1})
    assert "about version 7, not the served None" in operator.log_path.read_text()


def test_the_plugins_retrain_request_is_refused_in_the_cooldown_too(operator, deployment, namespace):
    res = subprocess.run([shutil.which("kubectl", path=PATH), "modelops", "retrain", NAME, "-n", namespace],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": PATH,
                                                                         "KUBECONFIG": KUBECONFIG})
    assert res.returncode == 0, res.stderr
    assert "asked the operator to retrain" in res.stdout
    wait_until("the request acted on", lambda: status(namespace).get("lastRequest")
               and status(namespace)["retrain"]["lastTrigger"]["source"] == "request", timeout=30)
    assert status(namespace)["retrain"]["lastTrigger"]["outcome"] == "Skipped"
    [message] = wait_until("RetrainSkipped", lambda: events(namespace, "RetrainSkipped"), timeout=30)
    assert "cooldown until" in message
    assert retrain_jobs(namespace) == [f"{NAME}-retrain-1"]


def test_the_finished_job_is_recorded_as_succeeded(operator, deployment, namespace):
    wait_until("the Job's result", lambda: status(namespace)["retrain"]["lastJob"].get("result"), timeout=90)
    last = status(namespace)["retrain"]["lastJob"]
    assert last["result"] == "Succeeded" and last["finished"], last
    [message] = events(namespace, "RetrainSucceeded")
    assert f"{NAME}-retrain-1 succeeded" in message
    log = kubectl("logs", "-n", namespace, f"job/{NAME}-retrain-1").stdout
    assert "retraining no-such-model-" in log and "@champion" in log and '"source": "alert"' in log


def test_a_hand_written_trigger_with_a_bad_time_is_acted_on_and_keeps_the_jobs_result(operator, deployment,
                                                                                         namespace):
    bad = json.dumps({"alert": "x" * 5000, "by": "me", "at": "not a time", "id": "hand-1"})
    kubectl("annotate", "--overwrite", "modeldeployment", NAME, "-n", namespace, f"{retrain.ALERT_ANNOTATION}={bad}")
    wait_until("the hand-written trigger acted on",
               lambda: status(namespace)["retrain"].get("lastAlertId") == "hand-1", timeout=30)
    record = status(namespace)["retrain"]
    assert record["lastTrigger"]["outcome"] == "Skipped" and record["lastTrigger"]["at"] != "not a time"
    assert len(record["lastTrigger"]["alert"]) == retrain.MAX_FIELD
    assert record["lastJob"]["result"] == "Succeeded"  # the trigger's write left the Job's result alone
