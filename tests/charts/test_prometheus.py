"""Every dashboard query and every alert of the chart, run by a real Prometheus (Debian's package)
scraping a real `modelops-serve` on a real ONNX model and the operator's real /metrics endpoint
(modelops_operator.http_server, served without a cluster), with the chart's rendered rules loaded.

kube-state-metrics cannot run here (no cluster objects to describe in this test), so its two HPA series
the dashboards and ModelopsReplicasAtMax read come from a static exposition in kube-state-metrics'
format: that part proves the queries' names and label joins, not kube-state-metrics itself.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from ..inference import models
from ..support import free_port
from .conftest import CHART, NAMESPACE, RELEASE, one, render

SERVE = str(Path(sys.executable).parent / "modelops-serve")
MODEL, MODEL_NS, VERSION = "mlp", "ml", "3"
OPERATOR_JOB = f"{RELEASE}-operator"
# What Grafana substitutes: "All" is the variables' allValue; $__rate_interval is at least 4 scrapes.
GRAFANA_VARS = {"$__rate_interval": "30s", "$namespace": ".*", "$model": ".*", "$version": ".*", "$job": ".*"}
# Thresholds no healthy system reaches, so every alert but OperatorDown fires on the test's traffic.
TRIGGER = {
    "monitoring.alerts.highErrorRate.threshold": "-1", "monitoring.alerts.highErrorRate.for": "0s",
    "monitoring.alerts.latencyBudgetBurn.fastBurnRate": "-1",
    "monitoring.alerts.latencyBudgetBurn.slowBurnRate": "-1", "monitoring.alerts.latencyBudgetBurn.for": "0s",
    "monitoring.alerts.replicasAtMax.for": "0s",
    "monitoring.alerts.rollback.threshold": "-1", "monitoring.alerts.exportsFailing.threshold": "-1",
    "monitoring.alerts.operatorDown.for": "0s",
    "monitoring.prometheusRule.additionalAlertLabels.rendering": "trigger",
}
KSM_EXPOSITION = textwrap.dedent(f"""\
    # HELP kube_horizontalpodautoscaler_spec_max_replicas Upper limit for the number of pods.
    # TYPE kube_horizontalpodautoscaler_spec_max_replicas gauge
    kube_horizontalpodautoscaler_spec_max_replicas{{namespace="{MODEL_NS}",horizontalpodautoscaler="{MODEL}"}} 3
    # HELP kube_horizontalpodautoscaler_status_current_replicas Current number of replicas of pods.
    # TYPE kube_horizontalpodautoscaler_status_current_replicas gauge
    kube_horizontalpodautoscaler_status_current_replicas{{namespace="{MODEL_NS}",horizontalpodautoscaler="{MODEL}"}} 3
    # HELP kube_horizontalpodautoscaler_status_desired_replicas Desired number of replicas of pods.
    # TYPE kube_horizontalpodautoscaler_status_desired_replicas gauge
    kube_horizontalpodautoscaler_status_desired_replicas{{namespace="{MODEL_NS}",horizontalpodautoscaler="{MODEL}"}} 3
    """)
OPERATOR_SCRIPT = textwrap.dedent("""\
    import asyncio, sys
    from modelops_operator import http_server, metrics
    from modelops_operator.config import OperatorConfig
    # the phase gauge exists once the operator has seen a ModelDeployment: record one, as handlers do
    metrics.set_phase("ml", "mlp", "Ready")
    config = OperatorConfig.from_env({"MODELOPS_API_PORT": sys.argv[1]})
    asyncio.run(http_server.serve(config, None, asyncio.Event()))
    """)

pytestmark = pytest.mark.skipif(not shutil.which("prometheus"), reason="Debian's prometheus not installed")


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen

    def get(self, path: str, **params) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.get("/api/v1/query", query=expr)["result"]

    def wait(self, what: str, fn, timeout: float = 60):
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited"
            last = fn()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def active_alerts(self, rendering: str) -> dict[str, str]:
        alerts = self.get("/api/v1/alerts")["alerts"]
        return {a["labels"]["alertname"]: a["state"] for a in alerts if a["labels"].get("rendering") == rendering}


@contextlib.contextmanager
def process(args: list[str], log: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered: {log.read_text()}")


@contextlib.contextmanager
def static_exposition(text: str) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def rule_groups(rendering: str, sets: dict[str, str]) -> list[dict]:
    sets = {**sets, "monitoring.prometheusRule.additionalAlertLabels.rendering": rendering}
    groups = one(render(sets=sets), "PrometheusRule")["spec"]["groups"]
    for group in groups:
        group["name"] = f"{group['name']}-{rendering}"
    return groups


@dataclass
class Stack:
    prometheus: Prometheus
    server_url: str
    operator: subprocess.Popen
    operator_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    model = models.mlp(tmp / "mlp.onnx")
    serve_port, operator_port, prom_port = free_port(), free_port(), free_port()
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups("default", {}) + rule_groups("trigger", TRIGGER)}))
    serve_env = {"MODELOPS_MODEL_URI": str(model), "MODELOPS_MODEL_NAME": MODEL, "MODELOPS_MODEL_VERSION": VERSION,
                 "MODELOPS_PORT": str(serve_port), "MODELOPS_GRPC_PORT": str(free_port()), "MODELOPS_HOST": "127.0.0.1"}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(process([SERVE], tmp / "serve.log", serve_env))
        operator = stack.enter_context(process([sys.executable, "-c", OPERATOR_SCRIPT, str(operator_port)],
                                               tmp / "operator.log"))
        ksm_port = stack.enter_context(static_exposition(KSM_EXPOSITION))
        server_url, operator_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{operator_port}"
        wait_http(server_url + "/v2/health/ready", server, tmp / "serve.log")
        wait_http(operator_url + "/metrics", operator, tmp / "operator.log")
        # target labels as the PodMonitor / ServiceMonitor give them in a cluster
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {"job_name": f"{MODEL_NS}/{RELEASE}-inference", "static_configs": [
                    {"targets": [f"127.0.0.1:{serve_port}"],
                     "labels": {"namespace": MODEL_NS, "pod": f"{MODEL}-7d9f-abcde", "container": "server"}}]},
                {"job_name": OPERATOR_JOB, "static_configs": [
                    {"targets": [f"127.0.0.1:{operator_port}"],
                     "labels": {"namespace": NAMESPACE, "pod": f"{OPERATOR_JOB}-0"}}]},
                {"job_name": "kube-state-metrics", "honor_labels": True,
                 "static_configs": [{"targets": [f"127.0.0.1:{ksm_port}"]}]},
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = subprocess.run(["promtool", "check", "config", str(tmp / "prometheus.yml")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        prom_proc = stack.enter_context(process(
            ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"], tmp / "prometheus.log"))
        prom = Prometheus(f"http://127.0.0.1:{prom_port}", prom_proc)
        wait_http(prom.url + "/-/ready", prom_proc, tmp / "prometheus.log")
        prom.wait("every target up", lambda: len([r for r in prom.query("up == 1")]) == 3)
        send_traffic(server_url, operator_url, seconds=8)
        yield Stack(prom, server_url, operator, operator_url)


def send_traffic(server_url: str, operator_url: str, seconds: float) -> None:
    """Good and bad inference requests over several scrapes, and a webhook delivery the operator rejects."""
    rows = np.random.default_rng(0).normal(size=(4, models.FEATURES)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    # first, so the counter (created on the first delivery, not at start-up) has samples before and after
    assert httpx.post(operator_url + "/webhooks/mlflow", content="{}").status_code >= 400
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=server_url, timeout=10) as client:
        while time.monotonic() < deadline:
            assert client.post(f"/v2/models/{MODEL}/infer", json=body).status_code == 200
            assert client.post(f"/v2/models/{MODEL}/infer", json={"inputs": []}).status_code == 400
            time.sleep(0.02)
    time.sleep(1)
    assert httpx.post(operator_url + "/webhooks/mlflow", content="{}").status_code >= 400


def dashboard_targets() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((path.stem, f"{panel['title']} [{target['refId']}]", target["expr"]))
    return found


def grafana_substitute(expr: str) -> str:
    for name, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr.replace("$1", ""), f"unsubstituted variable in {expr}"
    return expr


TARGETS = dashboard_targets()


def test_every_dashboard_has_panels_with_queries():
    assert {d for d, _, _ in TARGETS} == {"inference", "operator"}
    assert len(TARGETS) >= 25


@pytest.mark.parametrize(("dashboard", "panel", "expr"), TARGETS, ids=[f"{d}: {p}" for d, p, _ in TARGETS])
def test_dashboard_query_returns_series(stack, dashboard, panel, expr):
    result = stack.prometheus.query(grafana_substitute(expr))
    assert result, f"{dashboard} / {panel}: no series for {expr}"


def test_dashboard_traffic_panels_show_the_traffic(stack):
    [(dashboard, panel, expr)] = [t for t in TARGETS if t[1] == "Requests per second [A]"]
    [series] = stack.prometheus.query(grafana_substitute(expr))
    assert series["metric"] == {"namespace": MODEL_NS, "model_name": MODEL, "model_version": VERSION}
    assert float(series["value"][1]) > 1
    [(_, _, errors)] = [t for t in TARGETS if t[1] == "Error rate [B]"]  # the 400s sent
    assert 0.3 < float(stack.prometheus.query(grafana_substitute(errors))[0]["value"][1]) < 0.7


@pytest.mark.parametrize("dashboard", ["inference", "operator"])
def test_dashboard_variables_find_values(stack, dashboard):
    variables = json.loads((CHART / f"dashboards/{dashboard}.json").read_text())["templating"]["list"]
    for variable in variables:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        series = stack.prometheus.query(grafana_substitute(match.group(1)))
        values = {s["metric"].get(match.group(2)) for s in series} - {None}
        assert values, f"variable {variable['name']} would offer nothing"


def test_every_rule_loads_and_evaluates_without_error(stack):
    groups = stack.prometheus.get("/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == 14  # 7 alerts, rendered twice
    stack.prometheus.wait("every rule evaluated", lambda: all(
        r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
        for g in stack.prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]))
    for group in stack.prometheus.get("/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_alert_signals_exist_so_every_alert_fires_at_a_low_enough_threshold(stack):
    want = {"ModelopsInferenceHighErrorRate", "ModelopsInferenceLatencyBudgetBurnFast",
            "ModelopsInferenceLatencyBudgetBurnSlow", "ModelopsReplicasAtMax", "ModelopsRollback",
            "ModelopsExportsFailing"}
    active = stack.prometheus.wait("alerts to fire", lambda: (
        a if want <= set(a := stack.prometheus.active_alerts("trigger")) else None))
    assert "ModelopsOperatorDown" not in active  # the operator is being scraped
    alerts = [a for a in stack.prometheus.get("/api/v1/alerts")["alerts"] if a["labels"].get("rendering") == "trigger"]
    fired = {a["labels"]["alertname"]: a for a in alerts}
    assert fired["ModelopsInferenceHighErrorRate"]["labels"]["model_name"] == MODEL
    assert fired["ModelopsReplicasAtMax"]["labels"]["horizontalpodautoscaler"] == MODEL
    assert MODEL in fired["ModelopsInferenceHighErrorRate"]["annotations"]["summary"]  # $labels expanded


def test_with_default_thresholds_a_healthy_stack_raises_only_the_pinned_hpa(stack):
    time.sleep(3)  # several evaluations after the traffic
    assert set(stack.prometheus.active_alerts("default")) == {"ModelopsReplicasAtMax"}


def test_operator_down_fires_when_the_operator_stops(stack):
    stack.operator.terminate()
    stack.operator.wait(10)
    active = stack.prometheus.wait("ModelopsOperatorDown", lambda: (
        a if "ModelopsOperatorDown" in (a := stack.prometheus.active_alerts("trigger")) else None))
    assert active["ModelopsOperatorDown"] == "firing"
    # with the default `for`, it is pending until the operator stays down long enough
    stack.prometheus.wait("ModelopsOperatorDown pending with the default `for`", lambda: (
        stack.prometheus.active_alerts("default").get("ModelopsOperatorDown") == "pending"))
