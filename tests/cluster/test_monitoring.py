"""The local monitoring stack (hack/cluster/monitoring.sh): the Prometheus Operator's Prometheus and
Alertmanager are Ready on their host ports, and what a user (or the chart) creates in any namespace
takes effect — a PodMonitor is scraped, a PrometheusRule's alert reaches Alertmanager, and an
AlertmanagerConfig's route receives an alert whose `namespace` label names another namespace (matcher
strategy None: the chart's route in its release namespace gets the alerts of every model's namespace).

Every object is created at once by one module fixture, so the three waits (each bounded by how fast the
kubelet refreshes the generated configs mounted into Prometheus and Alertmanager) overlap."""

from __future__ import annotations

import json
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from .conftest import apply, condition, deployment, http_get, kget, kubectl, service, wait_until, web_container

pytestmark = pytest.mark.cluster

PROMETHEUS = f"http://127.0.0.1:{os.environ.get('MODELOPS_PROMETHEUS_PORT', '30090')}"
ALERTMANAGER = f"http://127.0.0.1:{os.environ.get('MODELOPS_ALERTMANAGER_PORT', '30093')}"

# /metrics: one gauge whose value the test looks for
METRICS_SERVER = """
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"# TYPE modelops_monitoring_test gauge\\nmodelops_monitoring_test 42\\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""

# a webhook receiver: keeps every POSTed body, GET answers them as a JSON list
WEBHOOK_RECEIVER = """
import http.server, json
received = []
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()
    def do_GET(self):
        body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
"""


@dataclass(frozen=True)
class Watched:
    namespace: str        # where the PodMonitor, PrometheusRule, AlertmanagerConfig and pods live
    alertname: str        # the PrometheusRule's always-firing alert
    alert_namespace: str  # the `namespace` label the alert carries: not `namespace`
    receiver: str         # URL of the webhook receiver's Service (the host reaches ClusterIPs)


def get_json(url: str) -> Any:
    return json.loads(http_get(url))


@pytest.fixture(scope="module")
def stack(cluster) -> None:
    missing = kubectl("-n", "monitoring", "get", "prometheus/main", "alertmanager/main", check=False)
    assert missing.returncode == 0, (
        "no monitoring stack: make cluster-up installs it unless MODELOPS_MONITORING=0, "
        f"or run hack/cluster/monitoring.sh install. {missing.stderr.strip()}")


@pytest.fixture(scope="module")
def watched(stack) -> Iterator[Watched]:
    ns = f"ct-mon-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    wait_until("default service account",
               lambda: kubectl("-n", ns, "get", "sa", "default", check=False).returncode == 0)
    alertname, alert_ns = f"ModelopsMonitoringTest{uuid.uuid4().hex[:6]}", f"{ns}-elsewhere"
    apply(ns,
          deployment("metrics", [web_container(script=METRICS_SERVER, readiness_path="/metrics")]),
          deployment("receiver", [web_container(script=WEBHOOK_RECEIVER)]),
          service("receiver", {"app": "receiver"}),
          pod_monitor(), prometheus_rule(alertname, alert_ns), alertmanager_config(alertname, ns))
    ip = kget("-n", ns, "service", "receiver")["spec"]["clusterIP"]
    yield Watched(ns, alertname, alert_ns, f"http://{ip}/")
    # pytest shows this only for a failed test
    print(kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout)
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def pod_monitor() -> dict[str, Any]:
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "metrics"},
            "spec": {"selector": {"matchLabels": {"app": "metrics"}},
                     "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "5s"}]}}


def prometheus_rule(alertname: str, alert_namespace: str) -> dict[str, Any]:
    rule = {"alert": alertname, "expr": "vector(1)", "labels": {"namespace": alert_namespace, "severity": "none"},
            "annotations": {"summary": "always firing (tests/cluster/test_monitoring.py)"}}
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "always"},
            "spec": {"groups": [{"name": "always", "rules": [rule]}]}}


def alertmanager_config(alertname: str, namespace: str) -> dict[str, Any]:
    url = f"http://receiver.{namespace}.svc.cluster.local/"
    return {"apiVersion": "monitoring.coreos.com/v1alpha1", "kind": "AlertmanagerConfig",
            "metadata": {"name": "webhook"},
            "spec": {"route": {"receiver": "webhook", "groupBy": ["alertname"], "groupWait": "1s",
                               "groupInterval": "5s", "repeatInterval": "1h",
                               "matchers": [{"name": "alertname", "value": alertname, "matchType": "="}]},
                     "receivers": [{"name": "webhook", "webhookConfigs": [{"url": url, "sendResolved": False}]}]}}


def test_prometheus_and_alertmanager_are_ready_on_their_host_ports(stack):
    for kind in ("prometheus", "alertmanager"):
        obj = kget("-n", "monitoring", kind, "main")
        assert condition(obj, "Available") == "True", obj.get("status")
        assert condition(obj, "Reconciled") == "True", obj.get("status")
    assert "Ready" in http_get(f"{PROMETHEUS}/-/ready")
    assert "OK" in http_get(f"{ALERTMANAGER}/-/ready")
    assert get_json(f"{ALERTMANAGER}/api/v2/status")["cluster"]["status"] in ("ready", "disabled")


def test_a_pod_monitor_in_any_namespace_is_scraped(watched):
    query = urllib.parse.quote(f'modelops_monitoring_test{{namespace="{watched.namespace}"}}')

    def scraped() -> list[dict[str, Any]]:
        return get_json(f"{PROMETHEUS}/api/v1/query?query={query}")["data"]["result"]

    (series,) = wait_until("Prometheus to scrape the PodMonitor's pod", scraped)
    assert series["value"][1] == "42"
    assert series["metric"]["job"] == f"{watched.namespace}/metrics"
    assert series["metric"]["pod"].startswith("metrics-")


def test_a_prometheus_rule_in_any_namespace_fires_into_alertmanager(watched):
    def in_alertmanager() -> list[dict[str, Any]]:
        return [a for a in get_json(f"{ALERTMANAGER}/api/v2/alerts") if a["labels"]["alertname"] == watched.alertname]

    (alert,) = wait_until("the PrometheusRule's alert in Alertmanager", in_alertmanager)
    assert alert["labels"]["namespace"] == watched.alert_namespace
    assert alert["status"]["state"] == "active"


def test_an_alertmanager_config_routes_alerts_of_other_namespaces_to_its_receiver(watched):
    """Under the default strategy (OnNamespace) the operator would add `namespace="<its namespace>"` to the
    route, and this alert, labelled with another namespace, would never reach the receiver."""
    def received() -> list[dict[str, Any]]:
        return [a for body in get_json(watched.receiver) for a in body["alerts"]
                if a["labels"]["alertname"] == watched.alertname]

    alerts = wait_until("the AlertmanagerConfig's webhook to receive the alert", received)
    assert {a["labels"]["namespace"] for a in alerts} == {watched.alert_namespace} != {watched.namespace}
    assert alerts[0]["status"] == "firing"
