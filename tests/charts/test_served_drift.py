"""Drift from served inputs to the recorded PSI, every part real: `modelops-serve` on an ONNX classifier
with the reference profile training writes beside it (found there, as in a pod), rows sent over HTTP,
Debian's Prometheus scraping the server every second with the chart's drift rules at a 15-second window.

Three phases of 4,000 rows, each sent once the previous one has left the window: none (training rows),
then one feature shifted by PSI 0.1, then by PSI 0.25 (tests/charts/served_drift.py). The recorded
feature and prediction PSI equal numpy's PSI of the very rows sent (binned by training's own `bins`,
predicted by onnxruntime) within 1e-3, and the counters equal numpy's counts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ..support import free_port
from . import served_drift
from .test_prometheus import DRIFT_RULES, DRIFT_WINDOW, SERVE, process, rule_groups, running_prometheus, wait_http

MODEL, VERSION, NAMESPACE = "bc", "7", "shop"
SHIFTED = 0  # "mean radius"
PHASES = {"none": 0.0, "psi 0.1": 0.1, "psi 0.25": 0.25}
ROWS, PER_REQUEST = 4000, 100


@pytest.fixture(scope="module")
def phases(tmp_path_factory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("served-drift")
    split = served_drift.breast_cancer()
    model = served_drift.classifier(tmp / "model.onnx", split.x_train, split.y_train)
    reference = served_drift.write_reference(model, split.x_train, split.feature_names)
    port = free_port()
    env = {"MODELOPS_MODEL_URI": str(model), "MODELOPS_MODEL_NAME": MODEL, "MODELOPS_MODEL_VERSION": VERSION,
           "MODELOPS_PORT": str(port), "MODELOPS_GRPC_PORT": str(free_port()), "MODELOPS_HOST": "127.0.0.1"}
    groups = [g for g in rule_groups("drift", DRIFT_RULES) if g["name"].startswith("modelops-drift")]
    rng = np.random.default_rng(3)
    seen: dict = {"reference": reference, "sent": []}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(process([SERVE], tmp / "serve.log", env))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v2/health/ready", server, tmp / "serve.log")
        prom = stack.enter_context(running_prometheus(tmp, groups, [
            {"job_name": "inference", "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE, "pod": f"{MODEL}-0"}}]}]))
        prom.wait("the counters' first samples", lambda: prom.query("modelops:feature_rows:increase == 0"))
        for name, target in PHASES.items():
            prom.wait("the window to hold no served rows", lambda: not prom.query(
                "modelops:feature_psi or modelops:feature_rows:increase > 0"), timeout=DRIFT_WINDOW + 15)
            rows = served_drift.shifted_rows(split.x_train, reference["features"][SHIFTED], SHIFTED, target, ROWS, rng)
            with httpx.Client(base_url=url, timeout=10) as client:
                for i in range(0, ROWS, PER_REQUEST):
                    client.post(f"/v2/models/{MODEL}/infer",
                                json=served_drift.v2_body(rows[i:i + PER_REQUEST])).raise_for_status()
            seen["sent"].append(rows)
            sent_at = time.time()
            assert _all_counted(url, seen["sent"])  # the server counts before it answers a scrape
            # an evaluation on a scrape taken after the last row: scrapes and evaluations are 1 s apart
            prom.wait(f"{name}: PSI of every feature from a scrape after the last row", lambda sent_at=sent_at: len(
                series := prom.query("modelops:feature_psi")) == 30 and prom.query("modelops:prediction_psi")
                and min(float(s["value"][0]) for s in series) >= sent_at + 2.5, timeout=15)
            seen[name] = {
                "feature": {s["metric"]["feature"]: float(s["value"][1]) for s in prom.query("modelops:feature_psi")},
                "prediction": float(prom.query("modelops:prediction_psi")[0]["value"][1]),
                "rows": rows, "scores": served_drift.scores(model, rows)}
        seen["metrics"] = httpx.get(url + "/metrics").text
    yield seen


def _all_counted(url: str, sent: list[np.ndarray]) -> bool:
    total = sum(len(r) for r in sent)
    text = httpx.get(url + "/metrics").text
    counted = sum(s.value for f in text_string_to_metric_families(text) if f.name == "modelops_inference_feature_bin"
                  for s in f.samples if s.name.endswith("_total") and s.labels["feature"] == "mean radius")
    return counted == total


def _numpy_feature_psi(reference: dict, rows: np.ndarray) -> dict[str, float]:
    from modelops_training.reference import bin_counts

    return {f["name"]: served_drift.psi(bin_counts(f["edges"], rows[:, j]), f["counts"])
            for j, f in enumerate(reference["features"])}


def _numpy_prediction_psi(reference: dict, scores: np.ndarray) -> float:
    served = np.bincount(scores.argmax(axis=1), minlength=len(reference["predictions"]["counts"]))
    return served_drift.psi(served, reference["predictions"]["counts"])


@pytest.mark.parametrize("phase", PHASES)
def test_recorded_psi_of_served_rows_equals_numpy_psi_of_the_same_rows(phases, phase):
    got, reference = phases[phase], phases["reference"]
    want = _numpy_feature_psi(reference, got["rows"])
    assert got["feature"] == pytest.approx(want, abs=1e-3)
    assert got["prediction"] == pytest.approx(_numpy_prediction_psi(reference, got["scores"]), abs=1e-3)


def test_the_shifted_feature_moves_by_the_chosen_psi_and_no_other_does(phases):
    name = phases["reference"]["features"][SHIFTED]["name"]
    for phase, target in PHASES.items():
        feature_psi = phases[phase]["feature"]
        # 4,000 rows: a PSI estimate of 10 bins is biased up by ~(bins - 1) / rows, its spread ~0.013 at 0.25
        assert feature_psi[name] == pytest.approx(target, abs=0.05), (phase, feature_psi[name])
        others = [p for f, p in feature_psi.items() if f != name]
        assert max(others) < 0.05, (phase, max(others))


def test_counters_equal_numpy_counts_of_every_row_sent(phases):
    from modelops_training.reference import bin_counts

    rows = np.concatenate([phases[p]["rows"] for p in PHASES])
    counted: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(phases["metrics"]):
        if family.name == "modelops_inference_feature_bin":
            for s in family.samples:
                if s.name.endswith("_total"):
                    counted[(s.labels["feature"], s.labels["bin"])] = s.value
    want = {(f["name"], str(b)): float(c) for j, f in enumerate(phases["reference"]["features"])
            for b, c in enumerate(bin_counts(f["edges"], rows[:, j]))}
    assert counted == want
