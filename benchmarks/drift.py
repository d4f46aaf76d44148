"""Drift alert benchmark (issue 14): how long after one input feature shifts by a given PSI, at 20
requests/s, the drift alert fires and reaches Alertmanager's receiver, with the test's rule windows.

Every part real and on this machine: `modelops-serve` on a breast-cancer classifier with the reference
profile training writes beside it (tests/charts/served_drift.py), Debian's Prometheus scraping it every
--scrape-interval with the chart's rendered PrometheusRule (drift window --window, `for` 0 s as in
tests/charts/test_monitoring_loop.py; the chart's default thresholds: warning 0.1, critical 0.25,
minSamples 100), Debian's Alertmanager with the chart's AlertmanagerConfig defaults (groupWait 30 s)
posting to a local webhook receiver that records when each alert arrived.

Per case: --baseline seconds of training-like rows (the window fills as in production), then one
feature ("mean radius") shifted by the case's PSI for up to --timeout seconds. From the shift:
  firing   the first rule evaluation with ModelopsFeatureDrift firing for the shifted feature, by severity
           (Prometheus's ALERTS; its activeAt is when the rule first matched)
  received the webhook receiving that alert from Alertmanager
  psi      the recorded PSI of the shifted feature at that moment
A case with no shift runs --timeout seconds and must raise nothing. Target: PSI 0.25 -> firing and
received within 120 s.

Prints a table and writes benchmarks/results/drift.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import platform
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.charts import served_drift  # noqa: E402  (needs ROOT on sys.path)
from tests.charts.test_prometheus import SERVE, process, rule_groups, wait_http  # noqa: E402
from tests.support import free_port  # noqa: E402

MODEL, VERSION, NAMESPACE = "breast-cancer", "1", "shop"
SHIFTED = 0  # "mean radius"
TARGET_S = 120


class Receiver:
    """Alertmanager's webhook receiver: (arrival time, alert labels) of every firing alert posted."""

    def __init__(self):
        self.received: list[tuple[float, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                outer.received += [(now, a["labels"]) for a in body["alerts"] if a["status"] == "firing"]
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def first(self, feature: str, since: float) -> float | None:
        times = [t for t, labels in self.received if labels.get("alertname") == "ModelopsFeatureDrift"
                 and labels.get("feature") == feature and t >= since]
        return min(times) if times else None


def prometheus_get(url: str, path: str, **params) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as r:
        return json.load(r)["data"]


def firing(prom: str, feature: str) -> dict[str, dict]:
    """The shifted feature's firing ModelopsFeatureDrift alerts by severity."""
    return {a["labels"]["severity"]: a for a in prometheus_get(prom, "/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == "ModelopsFeatureDrift" and a["labels"].get("feature") == feature
            and a["state"] == "firing"}


def feature_psi(prom: str, feature: str) -> float | None:
    result = prometheus_get(prom, "/api/v1/query", query=f'modelops:feature_psi{{feature="{feature}"}}')["result"]
    return float(result[0]["value"][1]) if result else None


class Traffic:
    """--rate one-row requests/s; `target` is the shifted feature's PSI for the rows sent from now on."""

    def __init__(self, url: str, split, feature: dict, rate: float):
        self.url, self.split, self.feature, self.rate = url, split, feature, rate
        self.target, self.sent, self.failed = 0.0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=self.url, timeout=5) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                row = served_drift.shifted_rows(self.split.x_train, self.feature, SHIFTED, self.target, 1, rng)
                try:
                    ok = client.post(f"/v2/models/{MODEL}/infer", json=served_drift.v2_body(row)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.sent += 1
                self.failed += not ok
                next_at += 1 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def run_case(prom: str, receiver: Receiver, traffic: Traffic, feature: str, target: float, args) -> dict:
    traffic.target = 0.0
    time.sleep(args.baseline)
    assert not firing(prom, feature), f"drift alerts before the shift: {firing(prom, feature)}"
    shifted = time.time()
    traffic.target = target
    print(f"  PSI {target}: shifted at {time.strftime('%H:%M:%S')}", flush=True)
    result = {"psi_target": target, "firing_s": {}, "received_s": None, "psi_at_firing": None}
    deadline = shifted + args.timeout
    while time.time() < deadline:
        for severity in firing(prom, feature):
            if severity not in result["firing_s"]:
                result["firing_s"][severity] = round(time.time() - shifted, 1)
                result["psi_at_firing"] = result["psi_at_firing"] or feature_psi(prom, feature)
        received = receiver.first(feature, shifted)
        if received and result["received_s"] is None:
            result["received_s"] = round(received - shifted, 1)
        if target and result["received_s"] is not None and "critical" in result["firing_s"]:
            break
        time.sleep(0.5)
    result["psi_at_end"] = feature_psi(prom, feature)
    if target:
        result["within_target"] = result["received_s"] is not None and result["received_s"] <= TARGET_S
    else:
        result["within_target"] = not result["firing_s"] and result["received_s"] is None
    traffic.target = 0.0
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", default="0,0.25", help="PSI of the shift per case, comma-separated (0: no shift)")
    p.add_argument("--rate", type=float, default=20.0, help="requests/s, one row each")
    p.add_argument("--window", default="1m", help="monitoring.drift.window (the test's)")
    p.add_argument("--scrape-interval", default="5s", help="as the test's PodMonitor (monitoring.podMonitor.interval)")
    p.add_argument("--evaluation-interval", default="10s", help="as the local cluster's Prometheus")
    p.add_argument("--baseline", type=float, default=75.0, help="s of unshifted traffic before each case")
    p.add_argument("--timeout", type=float, default=180.0, help="s per case after the shift")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/drift.json"))
    args = p.parse_args()
    cases = [float(c) for c in args.cases.split(",")]
    alertmanager = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not (shutil.which("prometheus") and alertmanager):
        sys.exit("needs Debian's prometheus and prometheus-alertmanager (make setup installs them)")

    split = served_drift.breast_cancer()
    report: dict = {"settings": {**vars(args), "target_s": TARGET_S}, "environment": {
        "machine": platform.machine(), "cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "cases": []}
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        model = served_drift.classifier(tmp / "model.onnx", split.x_train, split.y_train)
        reference = served_drift.write_reference(model, split.x_train, split.feature_names)
        feature = reference["features"][SHIFTED]
        port, am_port = free_port(), free_port()
        server = stack.enter_context(process([SERVE], tmp / "serve.log", {
            "MODELOPS_MODEL_URI": str(model), "MODELOPS_MODEL_NAME": MODEL, "MODELOPS_MODEL_VERSION": VERSION,
            "MODELOPS_PORT": str(port), "MODELOPS_GRPC_PORT": str(free_port()), "MODELOPS_HOST": "127.0.0.1"}))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v2/health/ready", server, tmp / "serve.log")

        receiver = Receiver()
        stack.callback(receiver.server.shutdown)
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump({
            "route": {"receiver": "operator", "group_by": ["namespace", "model_name"], "group_wait": "30s",
                      "group_interval": "5m", "repeat_interval": "1h"},
            "receivers": [{"name": "operator", "webhook_configs": [{"url": receiver.url, "send_resolved": False}]}]}))
        am = stack.enter_context(process([alertmanager, f"--config.file={tmp / 'alertmanager.yml'}",
                                          f"--storage.path={tmp / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                          "--cluster.listen-address="], tmp / "alertmanager.log"))
        wait_http(f"http://127.0.0.1:{am_port}/-/ready", am, tmp / "alertmanager.log")

        sets = {"monitoring.drift.window": args.window, "monitoring.alerts.featureDrift.for": "0s",
                "monitoring.alerts.predictionDrift.for": "0s"}
        groups = [g for g in rule_groups("bench", sets) if g["name"].startswith("modelops-drift")]
        (tmp / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
        prom_port = free_port()
        (tmp / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": args.scrape_interval, "evaluation_interval": args.evaluation_interval},
            "rule_files": [str(tmp / "rules.yaml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "inference", "static_configs": [{"targets": [f"127.0.0.1:{port}"],
                                "labels": {"namespace": NAMESPACE, "pod": f"{MODEL}-0"}}]}]}))
        prom_proc = stack.enter_context(process([
            "prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}"], tmp / "prometheus.log"))
        prom = f"http://127.0.0.1:{prom_port}"
        wait_http(prom + "/-/ready", prom_proc, tmp / "prometheus.log")

        traffic = Traffic(url, split, feature, args.rate)
        stack.callback(traffic.stop)
        print(f"drift benchmark: {args.rate:g} req/s, window {args.window}, scrape {args.scrape_interval}, "
              f"evaluation {args.evaluation_interval}, feature {feature['name']!r}", flush=True)
        for target in cases:
            report["cases"].append(run_case(prom, receiver, traffic, feature["name"], target, args))
            print(f"    {report['cases'][-1]}", flush=True)
        report["requests"] = {"sent": traffic.sent, "failed": traffic.failed}

    print(f"\n{'shift (PSI)':>12} {'warning fires':>14} {'critical fires':>15} {'receiver gets it':>17} "
          f"{'PSI at firing':>14} {'target':>8}")
    for c in report["cases"]:
        fmt = lambda v: "-" if v is None else f"{v:.0f} s"  # noqa: E731
        psi = "-" if c["psi_at_firing"] is None else f"{c['psi_at_firing']:.3f}"
        goal = f"<= {TARGET_S} s" if c["psi_target"] else "nothing"
        print(f"{c['psi_target']:>12g} {fmt(c['firing_s'].get('warning')):>14} "
              f"{fmt(c['firing_s'].get('critical')):>15} {fmt(c['received_s']):>17} {psi:>14} "
              f"{goal:>8} {'PASS' if c['within_target'] else 'FAIL'}")
    print(f"requests: {report['requests']['sent']} sent, {report['requests']['failed']} failed")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
