"""Every dashboard query and every alert of the chart, run by a real Prometheus (Debian's package)
scraping a real `modelops-serve` on a real ONNX model and the operator's real /metrics endpoint
(modelops_operator.http_server, served without a cluster), with the chart's rendered rules loaded.

The ModelDeployment is mid-canary, as in a cluster: a second `modelops-serve` serves the next version
under the same model_name, scraped as the PodMonitor scrapes a canary pod (target label track=canary),
with a known 5xx share (--fault-error-rate, below the default alert threshold); the operator reports
phase Canary at weight CANARY_WEIGHT. Every panel therefore sees both versions, as it would in a cluster.

kube-state-metrics cannot run here (no cluster objects to describe in this test), so its two HPA series
the dashboards and ModelopsReplicasAtMax read come from a static exposition in kube-state-metrics'
format: that part proves the queries' names and label joins, not kube-state-metrics itself.

The drift series (README "Drift": reference bins and ratios, served bin and class counters) come from an
exposition in modelops-serve's format too, advanced by the test: in the stack, at exactly the reference's
shares (PSI 0); in a Prometheus of their own, by known counts that shift by none, PSI about 0.1 and about
0.25, which the recorded PSI must equal as numpy computes it and which must fire the drift alerts by severity.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from ..inference import models
from ..support import free_port
from . import served_drift
from .conftest import CHART, NAMESPACE, RELEASE, one, render

SERVE = str(Path(sys.executable).parent / "modelops-serve")
MODEL, MODEL_NS, VERSION = "mlp", "ml", "3"
CANARY_VERSION, CANARY_WEIGHT = "4", 25
# the drift series' model version (a static exposition, see below): another ModelDeployment in MODEL_NS
DRIFT_MODEL, DRIFT_VERSION = "churn", "2"
# of the canary's valid requests; half the traffic is rejected inputs, so 2% of all: under the default
# ModelopsInferenceHighErrorRate threshold (5%), so the healthy-stack test still sees no such alert
CANARY_FAULT_RATE = 0.04
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
    "monitoring.alerts.featureDrift.warning": "-1", "monitoring.alerts.featureDrift.critical": "-1",
    "monitoring.alerts.featureDrift.for": "0s",
    "monitoring.alerts.predictionDrift.warning": "-1", "monitoring.alerts.predictionDrift.critical": "-1",
    "monitoring.alerts.predictionDrift.for": "0s", "monitoring.drift.minSamples": "0",
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
OPERATOR_SCRIPT = textwrap.dedent(f"""\
    import asyncio, sys
    from modelops_operator import http_server, metrics
    from modelops_operator.config import OperatorConfig
    # the per-ModelDeployment gauges exist once the operator has seen one: record a canary at a step, as
    # the handlers and canary.set_weight do
    metrics.set_phase("{MODEL_NS}", "{MODEL}", "Canary")
    metrics.CANARY_WEIGHT.labels("{MODEL_NS}", "{MODEL}").set({CANARY_WEIGHT})
    config = OperatorConfig.from_env({{"MODELOPS_API_PORT": sys.argv[1]}})
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
def static_exposition(text: str | Callable[[], str]) -> Iterator[int]:
    """Serves `text`, or what `text()` returns at each scrape."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = (text if isinstance(text, str) else text()).encode()
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


def rule_groups(rendering: str, sets: dict[str, str], *, records: bool = True) -> list[dict]:
    """The rendered rule groups, renamed for the rendering. A second rendering of the same window leaves
    out the recording rules: two groups writing one series would conflict (its alerts read the first's)."""
    sets = {**sets, "monitoring.prometheusRule.additionalAlertLabels.rendering": rendering}
    groups = one(render(sets=sets), "PrometheusRule")["spec"]["groups"]
    for group in groups:
        group["name"] = f"{group['name']}-{rendering}"
        group["rules"] = [r for r in group["rules"] if records or "record" not in r]
    return groups


numpy_psi = served_drift.psi  # PSI as the recording rules compute it

# A reference profile as reference.json holds it: bins per feature (a feature name with a space, a bin the
# training split never filled) and the model's own predicted classes.
DRIFT_FEATURES = {"mean radius": [25, 25, 25, 25], "x1": [50, 30, 20, 0]}
DRIFT_CLASSES = {"0": 60, "1": 40}
# Served rows of each phase (1,000 rows): feature bin counts and predicted-class counts.
DRIFT_PHASES = {
    "none": ({"mean radius": [250, 250, 250, 250], "x1": [500, 300, 200, 0]}, [600, 400]),
    "moderate": ({"mean radius": [380, 270, 200, 150], "x1": [480, 300, 200, 20]}, [440, 560]),
    "large": ({"mean radius": [450, 280, 160, 110], "x1": [460, 290, 200, 50]}, [340, 660]),
}


class DriftExposition:
    """modelops-serve's drift series for one model version: the reference's ratios (constant) and the
    served bin and class counters, which start at `base` (a server up for a while) and move by `add`."""

    def __init__(self, model: str, version: str, base: int = 0):
        self.model, self.version, self._lock = model, version, threading.Lock()
        self.bins = {f: [base] * len(c) for f, c in DRIFT_FEATURES.items()}
        self.classes = [base] * len(DRIFT_CLASSES)

    def add(self, bins: dict[str, list[int]], classes: list[int]) -> None:
        with self._lock:
            for feature, counts in bins.items():
                self.bins[feature] = [a + b for a, b in zip(self.bins[feature], counts, strict=True)]
            self.classes = [a + b for a, b in zip(self.classes, classes, strict=True)]

    def text(self) -> str:
        model = f'model_name="{self.model}",model_version="{self.version}"'
        lines = ["# TYPE modelops_inference_feature_bin_total counter"]
        with self._lock:
            bins, classes = {f: list(c) for f, c in self.bins.items()}, list(self.classes)
        lines += [f'modelops_inference_feature_bin_total{{{model},feature="{f}",bin="{i}"}} {n}'
                  for f, counts in bins.items() for i, n in enumerate(counts)]
        lines.append("# TYPE modelops_inference_feature_reference_ratio gauge")
        lines += [f'modelops_inference_feature_reference_ratio{{{model},feature="{f}",bin="{i}"}} {n / sum(ref)!r}'
                  for f, ref in DRIFT_FEATURES.items() for i, n in enumerate(ref)]
        lines.append("# TYPE modelops_inference_predictions_total counter")
        lines += [f'modelops_inference_predictions_total{{{model},class="{c}"}} {n}'
                  for c, n in zip(DRIFT_CLASSES, classes, strict=True)]
        lines.append("# TYPE modelops_inference_prediction_reference_ratio gauge")
        total = sum(DRIFT_CLASSES.values())
        lines += [f'modelops_inference_prediction_reference_ratio{{{model},class="{c}"}} {n / total!r}'
                  for c, n in DRIFT_CLASSES.items()]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_prometheus(tmp: Path, groups: list[dict], scrape_configs: list[dict]) -> Iterator[Prometheus]:
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(rules)], "scrape_configs": scrape_configs}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    check = subprocess.run(["promtool", "check", "config", str(tmp / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    with process(["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}"], tmp / "prometheus.log") as proc:
        prom = Prometheus(f"http://127.0.0.1:{port}", proc)
        wait_http(prom.url + "/-/ready", proc, tmp / "prometheus.log")
        yield prom


@dataclass
class Stack:
    prometheus: Prometheus
    server_url: str
    canary_url: str
    operator: subprocess.Popen
    operator_url: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus")
    model = models.mlp(tmp / "mlp.onnx")
    canary_model = models.mlp(tmp / "mlp-canary.onnx", seed=1)  # the next version: other weights
    serve_port, canary_port, operator_port = free_port(), free_port(), free_port()
    groups = rule_groups("default", {}) + rule_groups("trigger", TRIGGER, records=False)
    # a third model version serving rows at exactly its reference's shares (PSI 0), one scrape's worth each
    drift = DriftExposition(DRIFT_MODEL, DRIFT_VERSION)

    def drift_scrape() -> str:
        drift.add({f: list(c) for f, c in DRIFT_FEATURES.items()}, list(DRIFT_CLASSES.values()))
        return drift.text()
    serve_env = {"MODELOPS_MODEL_URI": str(model), "MODELOPS_MODEL_NAME": MODEL, "MODELOPS_MODEL_VERSION": VERSION,
                 "MODELOPS_PORT": str(serve_port), "MODELOPS_GRPC_PORT": str(free_port()), "MODELOPS_HOST": "127.0.0.1"}
    canary_env = {**serve_env, "MODELOPS_MODEL_URI": str(canary_model), "MODELOPS_MODEL_VERSION": CANARY_VERSION,
                  "MODELOPS_PORT": str(canary_port), "MODELOPS_GRPC_PORT": str(free_port()),
                  "MODELOPS_FAULT_ERROR_RATE": str(CANARY_FAULT_RATE)}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(process([SERVE], tmp / "serve.log", serve_env))
        canary = stack.enter_context(process([SERVE], tmp / "canary.log", canary_env))
        operator = stack.enter_context(process([sys.executable, "-c", OPERATOR_SCRIPT, str(operator_port)],
                                               tmp / "operator.log"))
        ksm_port = stack.enter_context(static_exposition(KSM_EXPOSITION))
        drift_port = stack.enter_context(static_exposition(drift_scrape))
        server_url, operator_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{operator_port}"
        canary_url = f"http://127.0.0.1:{canary_port}"
        wait_http(server_url + "/v2/health/ready", server, tmp / "serve.log")
        wait_http(canary_url + "/v2/health/ready", canary, tmp / "canary.log")
        wait_http(operator_url + "/metrics", operator, tmp / "operator.log")
        # target labels as the PodMonitor / ServiceMonitor give them in a cluster: one PodMonitor job for
        # both tracks, `track` only on the canary's pod (the PodMonitor's relabeling of modelops.io/track)
        scrape_configs = [
            {"job_name": f"{MODEL_NS}/{RELEASE}-inference", "static_configs": [
                {"targets": [f"127.0.0.1:{serve_port}"],
                 "labels": {"namespace": MODEL_NS, "pod": f"{MODEL}-7d9f-abcde", "container": "server"}},
                {"targets": [f"127.0.0.1:{canary_port}"],
                 "labels": {"namespace": MODEL_NS, "pod": f"{MODEL}-canary-5c8b-fghij", "container": "server",
                            "track": "canary"}},
                {"targets": [f"127.0.0.1:{drift_port}"],
                 "labels": {"namespace": MODEL_NS, "pod": f"{DRIFT_MODEL}-6b7c-klmno", "container": "server"}}]},
            {"job_name": OPERATOR_JOB, "static_configs": [
                {"targets": [f"127.0.0.1:{operator_port}"],
                 "labels": {"namespace": NAMESPACE, "pod": f"{OPERATOR_JOB}-0"}}]},
            {"job_name": "kube-state-metrics", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{ksm_port}"]}]},
        ]
        prom = stack.enter_context(running_prometheus(tmp, groups, scrape_configs))
        prom.wait("every target up", lambda: len([r for r in prom.query("up == 1")]) == 5)
        send_traffic([server_url, canary_url], operator_url, seconds=8)
        yield Stack(prom, server_url, canary_url, operator, operator_url)


def send_traffic(server_urls: list[str], operator_url: str, seconds: float) -> None:
    """Good and bad inference requests to each server over several scrapes (the canary's injected 500s
    among them), and a webhook delivery the operator rejects."""
    rows = np.random.default_rng(0).normal(size=(4, models.FEATURES)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    # first, so the counter (created on the first delivery, not at start-up) has samples before and after
    assert httpx.post(operator_url + "/webhooks/mlflow", content="{}").status_code >= 400
    deadline = time.monotonic() + seconds
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(httpx.Client(base_url=url, timeout=10)) for url in server_urls]
        while time.monotonic() < deadline:
            for client in clients:
                assert client.post(f"/v2/models/{MODEL}/infer", json=body).status_code in (200, 500)
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
    assert len(TARGETS) >= 37
    canary = [p for d, p, _ in TARGETS if d == "inference" and "Canary" in p]
    assert len(canary) == 8  # the Canary row: weight, requests, 5xx, p99, classes, three score quantiles
    drift = [p for d, p, e in TARGETS if d == "inference" and ("psi" in e or "reference_ratio" in e)]
    assert len(drift) == 4  # the Drift row: PSI per feature, top features, prediction PSI, classes' reference


@pytest.mark.parametrize(("dashboard", "panel", "expr"), TARGETS, ids=[f"{d}: {p}" for d, p, _ in TARGETS])
def test_dashboard_query_returns_series(stack, dashboard, panel, expr):
    result = stack.prometheus.query(grafana_substitute(expr))
    assert result, f"{dashboard} / {panel}: no series for {expr}"


def panel_query(stack: Stack, panel: str) -> list[dict]:
    [(_, _, expr)] = [t for t in TARGETS if t[1] == panel]
    return stack.prometheus.query(grafana_substitute(expr))


def test_dashboard_traffic_panels_show_the_traffic(stack):
    series = sorted(panel_query(stack, "Requests per second [A]"), key=lambda s: s["metric"]["model_version"])
    # one line per version: the stable one and the canary's
    assert [s["metric"] for s in series] == [
        {"namespace": MODEL_NS, "model_name": MODEL, "model_version": v} for v in (VERSION, CANARY_VERSION)]
    assert all(float(s["value"][1]) > 1 for s in series)
    rejected = panel_query(stack, "Error rate [B]")  # the 400s sent to both
    assert len(rejected) == 2 and all(0.3 < float(s["value"][1]) < 0.7 for s in rejected)


def by_track(series: list[dict]) -> dict[str, float]:
    return {s["metric"]["track"]: float(s["value"][1]) for s in series}


def test_canary_panels_compare_the_tracks_of_one_model_deployment(stack):
    requests = panel_query(stack, "Canary vs stable: requests per second [A]")
    assert sorted(s["metric"]["track"] for s in requests) == ["canary", "stable"]  # stable: no track label
    assert all(s["metric"] == {"namespace": MODEL_NS, "model_name": MODEL, "track": s["metric"]["track"]}
               for s in requests)
    assert all(rate > 1 for rate in by_track(requests).values())
    errors = by_track(panel_query(stack, "Canary vs stable: 5xx error rate [A]"))
    assert errors["stable"] == 0 and 0.01 < errors["canary"] < 0.03  # CANARY_FAULT_RATE of the valid half
    shares: dict[str, dict[str, float]] = {"stable": {}, "canary": {}}
    for s in panel_query(stack, "Canary vs stable: predicted classes [A]"):
        if s["metric"]["model_name"] != MODEL:  # the drift exposition's model
            continue
        shares[s["metric"]["track"]][s["metric"]["class"]] = round(float(s["value"][1]), 6)
    assert all(sum(by_class.values()) == pytest.approx(1) for by_class in shares.values())
    assert shares["stable"] != shares["canary"]  # the versions' other weights answer the same rows differently
    assert set(by_track(panel_query(stack, "Canary vs stable: top-1 score p10 / p50 / p90 [B]"))) == {
        "stable", "canary"}


def test_canary_weight_panels_name_the_model_deployment_not_the_operator_namespace(stack):
    # the scrape's target label namespace (the operator's) renames the gauge's own to exported_namespace
    [weight] = panel_query(stack, "Canary weight (current step) [A]")
    assert (weight["metric"], float(weight["value"][1])) == ({"namespace": MODEL_NS, "model_name": MODEL},
                                                             CANARY_WEIGHT)
    [weight] = panel_query(stack, "Canary weight of every ModelDeployment [A]")
    assert (weight["metric"], float(weight["value"][1])) == ({"namespace": MODEL_NS, "name": MODEL}, CANARY_WEIGHT)
    [phase] = panel_query(stack, "Phase of every ModelDeployment [A]")
    assert phase["metric"] == {"namespace": MODEL_NS, "name": MODEL, "phase": "Canary"}


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
    # 7 alerts, 4 drift alerts (2 severities each) and 3 drift recording rules; the second rendering
    # leaves out the recording rules
    assert len(rules) == 14 + 11
    stack.prometheus.wait("every rule evaluated", lambda: all(
        r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
        for g in stack.prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]))
    for group in stack.prometheus.get("/api/v1/rules")["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"


def test_alert_signals_exist_so_every_alert_fires_at_a_low_enough_threshold(stack):
    want = {"ModelopsInferenceHighErrorRate", "ModelopsInferenceLatencyBudgetBurnFast",
            "ModelopsInferenceLatencyBudgetBurnSlow", "ModelopsReplicasAtMax", "ModelopsRollback",
            "ModelopsExportsFailing", "ModelopsFeatureDrift", "ModelopsPredictionDrift"}
    active = stack.prometheus.wait("alerts to fire", lambda: (
        a if want <= set(a := stack.prometheus.active_alerts("trigger")) else None))
    assert "ModelopsOperatorDown" not in active  # the operator is being scraped
    alerts = [a for a in stack.prometheus.get("/api/v1/alerts")["alerts"] if a["labels"].get("rendering") == "trigger"]
    fired = {a["labels"]["alertname"]: a for a in alerts}
    assert fired["ModelopsInferenceHighErrorRate"]["labels"]["model_name"] == MODEL
    assert fired["ModelopsReplicasAtMax"]["labels"]["horizontalpodautoscaler"] == MODEL
    assert MODEL in fired["ModelopsInferenceHighErrorRate"]["annotations"]["summary"]  # $labels expanded
    assert {k: v for k, v in fired["ModelopsFeatureDrift"]["labels"].items() if k != "feature"} == {
        "alertname": "ModelopsFeatureDrift", "namespace": MODEL_NS, "model_name": DRIFT_MODEL,
        "model_version": DRIFT_VERSION, "severity": fired["ModelopsFeatureDrift"]["labels"]["severity"],
        "rendering": "trigger"}


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


def test_drift_panels_show_psi_per_feature_and_served_against_reference_classes(stack):
    # the stack's drift exposition serves rows at exactly the reference's shares
    psi = {s["metric"]["feature"]: float(s["value"][1]) for s in panel_query(stack, "PSI per feature [A]")}
    assert psi == pytest.approx(dict.fromkeys(DRIFT_FEATURES, 0.0), abs=1e-9)
    top = panel_query(stack, "Top drifting features [A]")
    assert {s["metric"]["feature"] for s in top} == set(DRIFT_FEATURES)
    [prediction] = panel_query(stack, "Prediction PSI [A]")
    assert prediction["metric"] == {"namespace": MODEL_NS, "model_name": DRIFT_MODEL, "model_version": DRIFT_VERSION}

    def shares(ref: str) -> dict[str, float]:
        series = panel_query(stack, f"Predicted classes vs reference [{ref}]")
        return {s["metric"]["class"]: float(s["value"][1]) for s in series if s["metric"]["model_name"] == DRIFT_MODEL}

    reference = {c: n / sum(DRIFT_CLASSES.values()) for c, n in DRIFT_CLASSES.items()}
    assert shares("A") == pytest.approx(reference) and shares("B") == pytest.approx(reference)


DRIFT_WINDOW = 15  # seconds: short, so that a phase's jump leaves the window quickly
DRIFT_RULES = {"monitoring.drift.window": f"{DRIFT_WINDOW}s", "monitoring.alerts.featureDrift.for": "1s",
               "monitoring.alerts.predictionDrift.for": "1s"}


@dataclass
class DriftPhase:
    feature_psi: dict[str, float]
    prediction_psi: float
    rows: dict[str, float]
    alerts: dict[str, set[tuple]]  # by rendering: (alertname, feature, severity), firing
    labels: list[dict]


@pytest.fixture(scope="module")
def drift_phases(tmp_path_factory) -> dict[str, DriftPhase]:
    """One model version's drift exposition scraped every second by a Prometheus with the drift rules at a
    15-second window: each phase adds its served counts in one step, waits until the recorded series and
    the alerts show it, and until the step has left the window. Renderings: `drift` (default thresholds
    and minSamples) and `few` (minSamples no window reaches)."""
    tmp = tmp_path_factory.mktemp("prometheus-drift")
    exposition = DriftExposition(DRIFT_MODEL, DRIFT_VERSION, base=10_000)
    groups = (rule_groups("drift", DRIFT_RULES)
              + rule_groups("few", {**DRIFT_RULES, "monitoring.drift.minSamples": "1000000"}, records=False))
    groups = [g for g in groups if g["name"].startswith("modelops-drift")]
    phases = {}
    with contextlib.ExitStack() as stack:
        port = stack.enter_context(static_exposition(exposition.text))
        prom = stack.enter_context(running_prometheus(tmp, groups, [
            {"job_name": f"{MODEL_NS}/{RELEASE}-inference", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": MODEL_NS, "pod": f"{DRIFT_MODEL}-0"}}]}]))
        prom.wait("the drift target up", lambda: prom.query("up == 1"))
        prom.wait("the counters' first samples", lambda: prom.query("modelops:feature_rows:increase == 0"))
        for name, (bins, classes) in DRIFT_PHASES.items():
            prom.wait("the window to hold no served rows", lambda: not prom.query(
                "modelops:feature_psi or modelops:prediction_psi or modelops:feature_rows:increase > 0"),
                timeout=DRIFT_WINDOW + 10)
            exposition.add(bins, classes)
            want = expected_drift_alerts(bins, classes)
            # PSI is exact from the first evaluation after the scrape that sees the step
            prom.wait(f"{name}: PSI of every feature", lambda: len(prom.query("modelops:feature_psi")) == 2
                      and prom.query("modelops:prediction_psi"))
            feature_psi = {s["metric"]["feature"]: float(s["value"][1]) for s in prom.query("modelops:feature_psi")}
            [prediction] = prom.query("modelops:prediction_psi")
            rows = {s["metric"]["feature"]: float(s["value"][1]) for s in prom.query("modelops:feature_rows:increase")}
            if want:
                prom.wait(f"{name}: drift alerts firing", lambda want=want: firing_drift_alerts(prom)["drift"] == want)
            else:
                time.sleep(3)  # several evaluations
            alerts = prom.get("/api/v1/alerts")["alerts"]
            phases[name] = DriftPhase(feature_psi, float(prediction["value"][1]), rows,
                                      firing_drift_alerts(prom, states=("firing", "pending")),
                                      [a["labels"] for a in alerts])
    return phases


def expected_drift_alerts(bins: dict[str, list[int]], classes: list[int]) -> set[tuple]:
    """The alerts the default thresholds (warning above 0.1, critical above 0.25) raise, by numpy's PSI."""
    want = set()
    for name, feature, psi in [*[("ModelopsFeatureDrift", f, numpy_psi(c, DRIFT_FEATURES[f])) for f, c in bins.items()],
                               ("ModelopsPredictionDrift", None, numpy_psi(classes, list(DRIFT_CLASSES.values())))]:
        want |= {(name, feature, severity) for severity, threshold in (("warning", 0.1), ("critical", 0.25))
                 if psi > threshold}
    return want


def firing_drift_alerts(prom: Prometheus, states: tuple[str, ...] = ("firing",)) -> dict[str, set[tuple]]:
    found: dict[str, set[tuple]] = {"drift": set(), "few": set()}
    for a in prom.get("/api/v1/alerts")["alerts"]:
        if a["state"] in states:
            labels = a["labels"]
            found[labels["rendering"]].add((labels["alertname"], labels.get("feature"), labels["severity"]))
    return found


@pytest.mark.parametrize("phase", DRIFT_PHASES)
def test_recorded_psi_equals_numpy_psi_of_the_same_counts(drift_phases, phase):
    bins, classes = DRIFT_PHASES[phase]
    got = drift_phases[phase]
    assert got.feature_psi == pytest.approx({f: numpy_psi(c, DRIFT_FEATURES[f]) for f, c in bins.items()}, abs=1e-3)
    assert got.prediction_psi == pytest.approx(numpy_psi(classes, list(DRIFT_CLASSES.values())), abs=1e-3)
    # the rows of the window: the step's 1,000 in every feature, which increase() extrapolates to the window's
    # edges (by the same factor in every bin of a target, so the shares above are exact)
    [rows] = {round(r, 6) for r in got.rows.values()}
    assert rows >= 1000, got.rows


def test_phases_shift_psi_by_none_about_a_tenth_and_about_a_quarter():
    psi = {name: [numpy_psi(c, DRIFT_FEATURES[f]) for f, c in bins.items()] + [
        numpy_psi(classes, list(DRIFT_CLASSES.values()))] for name, (bins, classes) in DRIFT_PHASES.items()}
    assert psi["none"] == [0, 0, 0]
    assert all(0.1 < p < 0.125 for p in psi["moderate"]) and all(0.25 < p < 0.35 for p in psi["large"])


def test_drift_alerts_fire_by_severity_and_not_without_drift(drift_phases):
    features = set(DRIFT_FEATURES)
    assert drift_phases["none"].alerts == {"drift": set(), "few": set()}  # not even pending
    assert drift_phases["moderate"].alerts["drift"] == {("ModelopsFeatureDrift", f, "warning") for f in features} | {
        ("ModelopsPredictionDrift", None, "warning")}
    assert drift_phases["large"].alerts["drift"] == {
        (alert, f, severity) for severity in ("warning", "critical")
        for alert, f in [*[("ModelopsFeatureDrift", f) for f in features], ("ModelopsPredictionDrift", None)]}
    # fewer rows in the window than monitoring.drift.minSamples: no alert however large the PSI
    assert drift_phases["large"].alerts["few"] == set()


def test_drift_alerts_carry_the_model_version_and_feature(drift_phases):
    labels = [a for a in drift_phases["large"].labels if a["alertname"] == "ModelopsFeatureDrift"]
    assert {a["feature"] for a in labels} == set(DRIFT_FEATURES)
    assert all({k: v for k, v in a.items() if k not in ("feature", "severity")} == {
        "alertname": "ModelopsFeatureDrift", "namespace": MODEL_NS, "model_name": DRIFT_MODEL,
        "model_version": DRIFT_VERSION, "rendering": "drift"} for a in labels)
    [prediction] = {tuple(sorted(a.items())) for a in drift_phases["large"].labels
                    if a["alertname"] == "ModelopsPredictionDrift" and a["severity"] == "critical"}
    assert dict(prediction) == {"alertname": "ModelopsPredictionDrift", "namespace": MODEL_NS,
                                "model_name": DRIFT_MODEL, "model_version": DRIFT_VERSION, "severity": "critical",
                                "rendering": "drift"}
