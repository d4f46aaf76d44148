"""Canary benchmark (issue 13): how long a good canary takes to reach 100 % with the default steps, how
closely the Gateway's split follows each step's weight, and how fast an erroring canary is aborted.

On the real local cluster (images loaded, Traefik as the Gateway API implementation, the shared Gateway
kube-system/modelops listener web on 127.0.0.1:30080), with a real `mlflow server` reachable from the
pods and the operator as a host process watching only the benchmark's namespace, its Gateway the shared
one (benchmarks/rollout.py's helpers, as tests/operator's Operator starts it):

  1. apply -> 100 %: a ModelDeployment (strategy canary, one stable replica) Ready on a fully trained
     breast-cancer MLP (seed 0), then a fresh honest retrain (seed 1, 2, ...: so every run exports)
     applied with the DEFAULT steps (10 -> 25 -> 50 %, 30 s of analysis each) and the default
     spec.analysis.live, while a load generator sends --rate requests/s through the Gateway
     (production-like rows: 90 % benign, as tests/operator/test_canary_live.py sends). From the apply,
     recorded: status.attempt's startedAt / exportedAt, the watch delivering each step's weight
     (status.canary.weight, and the operator's stepStartedAt), the phase leaving Canary (CanaryPassed),
     phase Ready, and the last answer the load generator got from the old version (from then on 100 %
     of the Gateway's answers are the new version's). Each step's share of the Gateway's answers is
     counted from 2 s after the HTTPRoute took its weight (polled every 0.25 s) until the next weight
     (the last step: until the phase leaves Canary), against the weight (target within 5 points).
     Failed requests: any answer but 200 (target 0).
  2. fault start -> abort: the same honest version with the server's test-only fault injection
     (spec.serving.env MODELOPS_FAULT_ERROR_RATE=0.05: every 20th inference request a 500) as a one-step
     canary (weight 25 %, analysisSeconds 60, default live analysis) over a Ready good version, same
     load. From the first 5xx the load generator saw: the last answer from the canary (its version or its
     injected 500; the route's canary weight back at 0) and the watch delivering phase RolledBack; the
     abort's reasons (Ready condition, expect CanaryFailed; status.canary.analysis, expect
     ErrorRateIncreased); failed requests (only the injected faults, ~5 % of the canary's answers).

Prints one table and writes benchmarks/results/canary.json (environment, settings, raw runs with a
per-second timeline of the answers). Everything it creates (namespace, MLflow, the operator) is removed
on the way out, also on failure. Before each section it waits (up to --quiet-wait s) for a quiet
machine; what ran anyway is recorded per section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import rollout  # noqa: E402
from benchmarks.rollout import (  # noqa: E402  (needs ROOT on sys.path)
    GROUP,
    PLURAL,
    SETTLED,
    VERSION,
    BusyMonitor,
    Watcher,
    api_clients,
    condition,
    create_namespace,
    environment,
    kubectl,
    log,
    pod_reachable_registry,
    settled_at,
    start_operator,
    table,
    train_versions,
    wait_pods_gone,
    wait_quiet,
)
from tests.support import SHARED_GATEWAY  # noqa: E402

# Any pytest run counts as busy: a unit run loads both cores too, and a single operator test module
# (`pytest --basetemp ... tests/operator/test_x.py`) does not read "pytest tests/operator".
rollout.BUSY = (*rollout.BUSY, "bin/pytest")

RESULTS = ROOT / "benchmarks" / "results" / "canary.json"
MODEL = "bench-canary"
GATEWAY_URL = f"http://127.0.0.1:{os.environ.get('MODELOPS_INGRESS_PORT', '30080')}"
FAULT = {"name": "MODELOPS_FAULT_ERROR_RATE", "value": "0.05"}
FAULT_STEPS = [{"weight": 25, "analysisSeconds": 60}]
DEFAULT_WEIGHTS = (10, 25, 50)  # spec.rollout.canary.steps' default (operator/modelops_operator/spec.py)
SHARE_SETTLE_S = 2.0  # a new weight's first seconds are not counted: Traefik picks the route up
TARGET_SHARE_POINTS = 5.0
TARGET_FAILED = 0
TARGET_ABORT_S = 30.0  # first 5xx -> no more canary answers, well inside the step's 60 s


def host(name: str) -> str:
    return f"{name}.canary-bench.modelops.test"


def manifest(name: str, version: str, env: list[dict] | None = None, steps: list[dict] | None = None) -> dict:
    """Strategy canary on the operator's Gateway; default steps and live analysis unless `steps`."""
    rollout: dict = {"strategy": "canary"}
    if steps:
        rollout["canary"] = {"steps": steps}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": MODEL, "version": version},
                     "serving": {"imagePullPolicy": "Never", "env": env or []}, "rollout": rollout,
                     "gateway": {"hostnames": [host(name)]}}}


def production_rows(n: int, seed: int, benign_share: float = 0.9) -> list[list[float]]:
    """Mostly benign tumours (class 1), not a balanced test set: what a screening service would see."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    benign, malignant = data.data[data.target == 1], data.data[data.target == 0]
    return [(benign[rng.integers(len(benign))] if rng.random() < benign_share
             else malignant[rng.integers(len(malignant))]).astype("float32").tolist() for _ in range(n)]


@dataclass(frozen=True)
class Answer:
    at: float
    version: str | None
    status: int  # 0: no HTTP answer (connection error, timeout)
    fault: bool  # a 500 that says it was injected


class GatewayLoad:
    """`rate` requests/s through the Gateway from `threads` keep-alive clients (each paced to its share),
    every answer recorded with its time, version and status."""

    def __init__(self, name: str, rate: float, threads: int = 4):
        self.name, self.rate, self.threads = name, rate, threads
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, seed: int) -> None:
        rows = production_rows(200, seed)
        url = f"{GATEWAY_URL}/v2/models/{self.name}/infer"
        every = self.threads / self.rate
        due = time.monotonic()
        with httpx.Client(timeout=10, headers={"Host": host(self.name)}) as client:
            i = 0
            while not self._stop.is_set():
                row = rows[i % len(rows)]
                body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": row}]}
                i += 1
                try:
                    resp = client.post(url, json=body)
                    ok = resp.status_code == 200
                    version = resp.json().get("model_version") if ok else None
                    fault = resp.status_code == 500 and "injected fault" in resp.text
                    self.answers.append(Answer(time.time(), version, resp.status_code, fault))
                    if not ok:
                        self.errors.append(f"{resp.status_code}: {resp.text[:200]}")
                except Exception as exc:  # noqa: BLE001 - any failure counts
                    self.answers.append(Answer(time.time(), None, 0, False))
                    self.errors.append(repr(exc))
                due += every
                self._stop.wait(max(0.0, due - time.monotonic()))
                due = max(due, time.monotonic() - every)  # behind schedule: no burst to catch up

    def __enter__(self) -> GatewayLoad:
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=15)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.at < end]


class RouteWatch:
    """The HTTPRoute's canary weight, polled every `interval` s: (time, weight) at each change."""

    def __init__(self, namespace: str, name: str, interval: float = 0.25):
        self.namespace, self.name, self.interval = namespace, name, interval
        self.changes: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _weight(self, custom) -> int | None:
        route = custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", self.namespace,
                                                    "httproutes", self.name)
        refs = route["spec"]["rules"][0]["backendRefs"]
        return next((r.get("weight") for r in refs if r["name"] == f"{self.name}-canary"), None)

    def _run(self) -> None:
        custom, _ = api_clients()
        while not self._stop.is_set():
            try:
                weight = self._weight(custom)
            except Exception:  # noqa: BLE001 - a hiccup: try again next poll
                weight = self.changes[-1][1] if self.changes else None
            if not self.changes or self.changes[-1][1] != weight:
                self.changes.append((time.time(), weight))
            self._stop.wait(self.interval)

    def first(self, weight: int, after: float = 0.0) -> float | None:
        return next((t for t, w in self.changes if w == weight and t >= after), None)

    def __enter__(self) -> RouteWatch:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- shared steps ----------------------------------------------------------------------------------

def serve_good(custom, watcher: Watcher, namespace: str, name: str, good: str) -> None:
    """`name` Ready on the good version (a first version rolls out as with rolling), routed by the Gateway."""
    t0 = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest(name, good))
    _, obj = watcher.wait_for(name, lambda o: (o.get("status") or {}).get("phase") in SETTLED, t0, 300,
                              "the good version settled")
    if obj["status"]["phase"] != "Ready":
        raise RuntimeError(f"good version {good} did not become Ready: {obj['status']}")
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{GATEWAY_URL}/v2/models/{name}", headers={"Host": host(name)}, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Gateway does not route {host(name)} after 60 s")
        time.sleep(0.5)


def apply_spec(custom, namespace: str, name: str, spec: dict) -> tuple[float, int]:
    """The whole new spec (a merge patch: lists replaced); (time of the call, the new generation)."""
    t = time.time()
    obj = custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, {"spec": spec})
    return t, obj["metadata"]["generation"]


def remove(custom, core, namespace: str, name: str) -> None:
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    wait_pods_gone(core, namespace, name)
    wait_pods_gone(core, namespace, f"{name}-canary")


def timeline(answers: list[Answer], since: float, old: str, new: str) -> list[list[int]]:
    """Per second since `since`: [second, old version's answers, new version's, failed]."""
    buckets: dict[int, list[int]] = {}
    for a in answers:
        row = buckets.setdefault(int(a.at - since), [0, 0, 0])
        row[0 if a.version == old else 1 if a.version == new else 2] += 1
    return [[s, *buckets[s]] for s in sorted(buckets)]


def rel(t: float | None, since: float) -> float | None:
    return round(t - since, 2) if t is not None else None


def history(watcher: Watcher, name: str, since: float) -> list[tuple[float, dict]]:
    return [(t, o.get("status") or {}) for t, o in watcher.events.get(name, []) if t >= since]


# --- 1. apply -> 100 % -----------------------------------------------------------------------------

def steps_seen(events: list[tuple[float, dict]], version: str) -> tuple[dict[int, dict], tuple[float, str] | None]:
    """Per weight: when the watch first delivered it (and the operator's stepStartedAt, the step's last
    analysis); and (when, to which phase) the phase left Canary after the steps."""
    steps: dict[int, dict] = {}
    left = None
    for t, st in events:
        c = st.get("canary") or {}
        if st.get("phase") == "Canary" and c.get("version") == version and c.get("weight"):
            step = steps.setdefault(c["weight"], {"seen": t, "step_started_at": c.get("stepStartedAt")})
            if c.get("analysis"):
                step["analysis"] = c["analysis"]
        elif steps and left is None and st.get("phase") != "Canary":
            left = (t, st.get("phase"))
    return steps, left


def step_shares(load: GatewayLoad, route: RouteWatch, weights: list[int], end: float | None, new: str) -> list[dict]:
    """Each step's share of the Gateway's answers from the new version, from SHARE_SETTLE_S after the
    route took the weight until the route's next weight (the last: `end`, the phase leaving Canary)."""
    starts = [route.first(w) for w in weights]
    out = []
    for weight, start in zip(weights, starts, strict=True):
        changed = next((t for t, _ in route.changes if start is not None and t > start), None)
        stop = min((t for t in (changed, end) if t is not None), default=None)
        if start is None or stop is None:
            out.append({"weight": weight, "answers": 0, "share": None, "off_by_points": None})
            continue
        window = [a for a in load.between(start + SHARE_SETTLE_S, stop) if a.status == 200]
        share = 100 * sum(a.version == new for a in window) / max(1, len(window))
        out.append({"weight": weight, "route_at": round(start, 3), "window_s": round(stop - start - SHARE_SETTLE_S, 1),
                    "answers": len(window), "share": round(share, 2), "off_by_points": round(share - weight, 2)})
    return out


def promote_run(custom, core, watcher: Watcher, namespace: str, run: int, good: str, new: str, rate: float) -> dict:
    name = f"promote-{run}"
    serve_good(custom, watcher, namespace, name, good)
    with GatewayLoad(name, rate) as load, RouteWatch(namespace, name) as route:
        time.sleep(3)
        t_apply, gen = apply_spec(custom, namespace, name, manifest(name, new)["spec"])
        t_settled, obj = watcher.wait_for(name, settled_at(gen), t_apply, 600, "the canary settled")
        time.sleep(3)  # answers just after Ready count too
    st = obj["status"]
    a = st.get("attempt") or {}
    steps, left = steps_seen(history(watcher, name, t_apply), new)
    passed = left[0] if left and left[1] == "RollingOut" else None  # CanaryPassed: the stable pods move
    ready = st["phase"] == "Ready" and st.get("modelVersion") == new
    after = load.between(t_apply, time.time())
    last_old = max((x.at for x in after if x.version == good), default=None) if ready else None
    first_new = min((x.at for x in after if x.version == new), default=None)
    weights = sorted(steps) or list(DEFAULT_WEIGHTS)
    row = {
        "run": run, "name": name, "old": good, "new": new, "phase": st["phase"], "serving": st.get("modelVersion"),
        "ready_reason": condition(obj, "Ready").get("reason"),
        "resolve_s": rel(a.get("startedAt"), t_apply), "exported_s": rel(a.get("exportedAt"), t_apply),
        "first_weight_s": rel(steps[weights[0]]["seen"], t_apply) if steps else None,
        "steps_s": {w: rel(s["seen"], t_apply) for w, s in sorted(steps.items())},
        "step_started_at_s": {w: rel(s["step_started_at"], t_apply) for w, s in sorted(steps.items())},
        "first_canary_answer_s": rel(first_new, t_apply),
        "canary_passed_s": rel(passed, t_apply), "settled_s": rel(t_settled, t_apply),
        "ready_s": rel(t_settled, t_apply) if ready else None,
        "last_old_answer_s": rel(last_old, t_apply),
        "left_canary_s": rel(left[0], t_apply) if left else None, "left_canary_to": left[1] if left else None,
        "shares": step_shares(load, route, weights, left[0] if left else None, new),
        "step_analysis": {w: s.get("analysis") for w, s in sorted(steps.items())},
        "route_changes_s": [[rel(t, t_apply), w] for t, w in route.changes],
        "answers": len(load.answers), "rate_per_s": round(len(after) / max(1e-9, after[-1].at - t_apply), 1)
        if after else 0.0,
        "failed": len(load.errors), "failures_sample": load.errors[:5],
        "old_answers_after_ready": sum(x.version == good for x in after if x.at > t_settled) if ready else None,
        "timeline": timeline(load.answers, t_apply, good, new),
    }
    shares = ", ".join(f"{s['weight']}%->{s['share']}" for s in row["shares"])
    log(f"  run {run}: {row['phase']} {row['ready_reason']}; first weight {row['first_weight_s']} s, "
        f"steps {row['steps_s']}, passed {row['canary_passed_s']} s, Ready {row['ready_s']} s, "
        f"last old answer {row['last_old_answer_s']} s; "
        f"shares {shares}; {row['failed']} failed of {row['answers']} ({row['rate_per_s']}/s)")
    remove(custom, core, namespace, name)
    return row


# --- 2. fault start -> abort -----------------------------------------------------------------------

def fault_run(custom, core, watcher: Watcher, namespace: str, run: int, good: str, new: str, rate: float) -> dict:
    name = f"fault-{run}"
    serve_good(custom, watcher, namespace, name, good)
    with GatewayLoad(name, rate) as load, RouteWatch(namespace, name) as route:
        time.sleep(3)
        t_apply, gen = apply_spec(custom, namespace, name, manifest(name, new, [FAULT], FAULT_STEPS)["spec"])
        t_settled, obj = watcher.wait_for(name, settled_at(gen), t_apply, 600, "the faulty canary settled")
        time.sleep(3)
    st = obj["status"]
    c = st.get("canary") or {}
    after = load.between(t_apply, time.time())
    canary = [x for x in after if x.version == new or x.fault]
    faults = [x for x in after if x.fault]
    first_5xx = min((x.at for x in after if x.status >= 500), default=None)
    last_canary = max((x.at for x in canary), default=None)
    weight = FAULT_STEPS[0]["weight"]
    route_on = route.first(weight)
    route_off = route.first(0, after=route_on) if route_on else None
    row = {
        "run": run, "name": name, "old": good, "new": new, "phase": st["phase"], "serving": st.get("modelVersion"),
        "ready_reason": condition(obj, "Ready").get("reason"), "outcome": c.get("outcome"), "step": c.get("step"),
        "analysis_reason": (c.get("analysis") or {}).get("reason"),
        "analysis_message": (c.get("analysis") or {}).get("message"),
        "analysis": c.get("analysis"),
        "route_weight_s": rel(route_on, t_apply),
        "first_canary_answer_s": rel(min((x.at for x in canary), default=None), t_apply),
        "first_5xx_s": rel(first_5xx, t_apply),
        "first_5xx_to_last_canary_answer_s": rel(last_canary, first_5xx) if first_5xx else None,
        "first_5xx_to_route_weight_0_s": rel(route_off, first_5xx) if first_5xx and route_off else None,
        "first_5xx_to_rolledback_s": rel(t_settled, first_5xx) if first_5xx else None,
        "canary_answers": len(canary), "faults": len(faults),
        "fault_share": round(len(faults) / max(1, len(canary)), 4),
        "failed": len(load.errors), "failed_not_injected": len(load.errors) - sum(x.fault for x in load.answers),
        "failures_sample": [e for e in load.errors if "injected fault" not in e][:5],
        "answers": len(load.answers), "rate_per_s": round(len(after) / max(1e-9, after[-1].at - t_apply), 1)
        if after else 0.0,
        "route_changes_s": [[rel(t, t_apply), w] for t, w in route.changes],
        "timeline": timeline(load.answers, t_apply, good, new),
    }
    log(f"  run {run}: {row['phase']} {row['ready_reason']}/{row['analysis_reason']}; first 5xx at "
        f"{row['first_5xx_s']} s, -> last canary answer {row['first_5xx_to_last_canary_answer_s']} s, -> RolledBack "
        f"{row['first_5xx_to_rolledback_s']} s; {row['faults']} faults of {row['canary_answers']} canary answers, "
        f"{row['failed_not_injected']} other failures")
    remove(custom, core, namespace, name)
    if first_5xx is None and run == 1:
        raise SystemExit("the canary answered no 5xx: the inference image in the cluster lacks "
                         "MODELOPS_FAULT_ERROR_RATE; `make images` first")
    return row


# --- summary ---------------------------------------------------------------------------------------

def _median(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 1) if vals else None


def _spread(values: list) -> str:
    return ", ".join("-" if v is None else f"{v:.1f}" for v in values)


def _timing(values: list) -> str:
    med = _median(values)
    return f"median {med} s ({_spread(values)})" if med is not None else "-"


def summarize(report: dict) -> list[dict]:
    rows = []
    promote = report.get("promote") or []
    if promote:
        n = len(promote)

        def timing(label: str, key: str, weight: int | None = None) -> dict:
            vals = [r[key].get(weight) if weight is not None else r[key] for r in promote]
            return {"measurement": f"  apply -> {label}", "runs": n,
                    "result": _timing(vals), "target": "", "verdict": ""}

        ready = sum(r["phase"] == "Ready" and r["serving"] == r["new"] for r in promote)
        why = [f"{r['ready_reason']} at {max(r['steps_s'], default='-')} % "
               f"({(r['step_analysis'].get(max(r['steps_s'], default=0)) or {}).get('reason')})"
               for r in promote if r["phase"] != "Ready"]
        rows.append({"measurement": "good canary, default steps 10/25/50 % x 30 s: Ready on the new version",
                     "runs": n, "result": f"{ready} of {n}" + (f"; {', '.join(why)}" if why else ""),
                     "target": f"{n} of {n}",
                     "verdict": "PASS" if ready == n else "MISS"})
        rows += [timing("export done (first export of each retrain)", "exported_s"),
                 timing("first canary weight (10 %)", "first_weight_s")]
        rows += [timing(f"step {w} %", "steps_s", w) for w in DEFAULT_WEIGHTS[1:]]
        rows += [timing("CanaryPassed (phase leaves Canary)", "canary_passed_s"), timing("Ready", "ready_s"),
                 timing("last answer from the old version (100 % new)", "last_old_answer_s")]
        for i, weight in enumerate(DEFAULT_WEIGHTS):
            shares = [r["shares"][i] for r in promote if i < len(r["shares"]) and r["shares"][i]["share"] is not None]
            worst = max((abs(s["off_by_points"]) for s in shares), default=None)
            rows.append({"measurement": f"step {weight} %: share of Gateway answers from the canary",
                         "runs": len(shares),
                         "result": f"{_spread([s['share'] for s in shares])} % (of {_spread_int(shares)} answers)",
                         "target": f"+-{TARGET_SHARE_POINTS:g} points",
                         "verdict": "PASS" if worst is not None and worst <= TARGET_SHARE_POINTS and len(shares) == n
                         else "MISS"})
        failed = sum(r["failed"] for r in promote)
        answers = sum(r["answers"] for r in promote)
        rates = [r["rate_per_s"] for r in promote]
        rows.append({"measurement": "failed requests through the Gateway (good canary)", "runs": n,
                     "result": f"{failed} of {answers} (load {_median(rates)} req/s)", "target": str(TARGET_FAILED),
                     "verdict": "PASS" if failed <= TARGET_FAILED else "MISS"})
    faulty = report.get("fault") or []
    if faulty:
        n = len(faulty)
        aborted = [r for r in faulty if r["phase"] == "RolledBack"]
        reasons = sorted({f"{r['ready_reason']}/{r['analysis_reason']}" for r in faulty})
        rows.append({"measurement": "canary with 5 % injected 5xx (25 %, 60 s): aborted", "runs": n,
                     "result": f"{len(aborted)} of {n} RolledBack, {', '.join(reasons)}",
                     "target": "RolledBack, CanaryFailed/ErrorRateIncreased",
                     "verdict": "PASS" if len(aborted) == n and reasons == ["CanaryFailed/ErrorRateIncreased"]
                     else "MISS"})
        last = [r["first_5xx_to_last_canary_answer_s"] for r in faulty]
        rows.append({"measurement": "  first 5xx -> last answer from the canary (weight 0)", "runs": n,
                     "result": _timing(last), "target": f"< {TARGET_ABORT_S:g} s",
                     "verdict": "PASS" if None not in last and max(last) < TARGET_ABORT_S else "MISS"})
        rolled = [r["first_5xx_to_rolledback_s"] for r in faulty]
        rows.append({"measurement": "  first 5xx -> phase RolledBack", "runs": n,
                     "result": _timing(rolled), "target": "", "verdict": ""})
        faults = sum(r["faults"] for r in faulty)
        canary = sum(r["canary_answers"] for r in faulty)
        other = sum(r["failed_not_injected"] for r in faulty)
        rows.append({"measurement": "  failed requests: injected / other", "runs": n,
                     "result": f"{faults} ({100 * faults / max(1, canary):.1f} % of {canary} canary answers) / {other}",
                     "target": "~5 % / 0", "verdict": "PASS" if other == 0 else "MISS"})
    return rows


def _spread_int(shares: list[dict]) -> str:
    return ", ".join(str(s["answers"]) for s in shares)


# --- main ------------------------------------------------------------------------------------------

def bench(args, report: dict, stack: contextlib.ExitStack, tmp: Path) -> None:
    if kubectl("get", "--raw", "/readyz", check=False).returncode != 0:
        raise SystemExit("no cluster answers: `make cluster-up` and `make images` first")
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modelops.io", "--timeout=60s")
    report["environment"] = environment()
    if not report["environment"]["cluster"]["serving_image_present"]:
        raise SystemExit("the serving image is not loaded into the cluster: `make images` first")
    report["quiet"] = {"start": wait_quiet(args.quiet_wait)}
    monitor = BusyMonitor()
    stack.callback(monitor.stop)
    spans: dict[str, list[float]] = {}
    node = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"][0]
    node_ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    registry = stack.enter_context(pod_reachable_registry(tmp, node_ip))
    started = time.monotonic()
    good = train_versions(registry, "breast_cancer", MODEL, 1, None)[0]
    honest = train_versions(registry, "breast_cancer", MODEL, max(1, args.runs), None, first_seed=1)
    report["training"] = {"seconds": round(time.monotonic() - started, 1), "good": good, "honest": honest}
    log(f"trained good v{good}, honest retrains {honest}")
    namespace = create_namespace("bench-canary", stack)
    op = start_operator(registry, namespace, tmp / "operator", stack, 30)
    if op.env.get("MODELOPS_GATEWAY") != SHARED_GATEWAY.env:
        raise SystemExit(f"the operator's MODELOPS_GATEWAY is {op.env.get('MODELOPS_GATEWAY')!r}, "
                         f"not the shared Gateway {SHARED_GATEWAY.env}")
    report["gateway"] = SHARED_GATEWAY.env
    watcher = Watcher(namespace)
    stack.callback(watcher.stop)
    custom, core = api_clients()

    log("1. apply -> 100 % with the default steps")
    report["quiet"]["promote"] = wait_quiet(args.quiet_wait)
    spans["promote"] = [time.time()]
    report["promote"] = [promote_run(custom, core, watcher, namespace, i + 1, good, honest[i], args.rate)
                         for i in range(args.runs)]
    spans["promote"].append(time.time())

    log("2. fault start -> abort")
    report["quiet"]["fault"] = wait_quiet(args.quiet_wait)
    spans["fault"] = [time.time()]
    report["fault"] = [fault_run(custom, core, watcher, namespace, i + 1, good, honest[0], args.rate)
                       for i in range(args.fault_runs)]
    spans["fault"].append(time.time())
    report["disturbed_by"] = {name: monitor.during(*span) for name, span in spans.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="good canaries (a fresh retrain each); --fault-runs' default")
    p.add_argument("--fault-runs", type=int, default=None, help="canaries with injected 5xx (default: --runs)")
    p.add_argument("--rate", type=float, default=120, help="requests/s the load generator sends through the Gateway")
    p.add_argument("--quiet-wait", type=float, default=600, help="max seconds to wait for other test runs")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.fault_runs is None:
        args.fault_runs = args.runs
    rollout.quiet_libraries()
    report: dict = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
                    "targets": {"share_off_by_points": TARGET_SHARE_POINTS, "failed_requests": TARGET_FAILED,
                                "first_5xx_to_last_canary_answer_s": TARGET_ABORT_S},
                    "method": {"default_steps": [{"weight": w, "analysisSeconds": 30} for w in DEFAULT_WEIGHTS],
                               "fault_steps": FAULT_STEPS, "fault_env": FAULT, "share_settle_s": SHARE_SETTLE_S,
                               "live_analysis": "the CRD's defaults (interval 5 s, minSamples 100, ...)",
                               "busy_when_running": [*rollout.BUSY, "another modelops-operator process"]}}
    rollout.run_bench(bench, args, report, "bench-canary-")
    report["environment"]["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    rows = summarize(report)
    text = table(rows)
    report["summary"], report["table"] = rows, text.splitlines()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(text)
    disturbed = {k: v for k, v in report["disturbed_by"].items() if v}
    if disturbed:
        print(f"\nalso running during a section (timings may be skewed): {disturbed}")
    print(f"\nwrote {args.out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
