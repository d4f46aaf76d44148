"""Canary releases on the real cluster: the HTTPRoute on the local cluster's Gateway (Traefik), fully
trained versions in a real MLflow, the operator as a process (its Gateway the shared one, as in every
operator test module), and a load generator sending requests
through the Gateway all along. A good canary is promoted through every step with no failed request
and the weights it was given; a canary answering 5 % 5xx, or shifting its predictions, is aborted by
its live analysis; a canary nobody sends traffic to is held, then aborted or promoted by the plugin."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from .conftest import INGRESS_PORT, kget, wait_until
from .test_e2e import apply, status, wait_settled
from .test_verdicts_live import events, plugin, version_tags

pytestmark = pytest.mark.cluster
MODEL = "canary-cancer"
FAULT = {"name": "MODELOPS_FAULT_ERROR_RATE", "value": "0.05"}
# judged quickly: a look every second, 50 requests a side before any judgement
LIVE = {"intervalSeconds": 1, "minSamples": 50, "maxDurationSeconds": 60}


@pytest.fixture(scope="module")
def canaried(registry) -> dict[str, str]:
    """Fully trained breast-cancer versions: good (seed 0), an honest retrain (seed 1), and one whose
    answers a fifth of the time are the other class (it exports and passes its own checks)."""
    from modelops_training.train import TrainConfig, train

    made = {}
    for label, seed, sabotage in (("good", 0, None), ("honest", 1, None), ("flipped", 3, "flip=0.2")):
        made[label] = train(TrainConfig(dataset="breast_cancer", seed=seed, register=MODEL, sabotage=sabotage,
                                        progress=False, tracking_uri=registry["local"])).version
    return made


def manifest(name: str, version: str | None, steps: list[dict] | None = None, analysis: dict | None = None,
             env: list[dict] | None = None, alias: str | None = None) -> dict:
    rollout = {"progressDeadlineSeconds": 90, "strategy": "canary"}
    if steps:
        rollout["canary"] = {"steps": steps}
    return {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": MODEL, **({"alias": alias} if alias else {"version": version})},
                     "serving": {"imagePullPolicy": "Never", "env": env or []}, "rollout": rollout,
                     "gateway": {"hostnames": [host(name)]},
                     "analysis": {"live": LIVE, **(analysis or {})}}}


def host(name: str) -> str:
    return f"{name}.canary.modelops.test"


def rows(n: int, benign_share: float = 0.9) -> np.ndarray:
    """Production-like traffic, not a balanced test set: mostly benign tumours (class 1). On it a fifth
    of flipped answers moves the predicted-class mix by about 16 points."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(0)
    benign, malignant = data.data[data.target == 1], data.data[data.target == 0]
    picks = [benign[rng.integers(len(benign))] if rng.random() < benign_share
             else malignant[rng.integers(len(malignant))] for _ in range(n)]
    return np.asarray(picks, dtype=np.float32)


class GatewayLoad:
    """Requests through the Gateway from a few threads, each answer recorded with its version and time."""

    def __init__(self, name: str, threads: int = 3):
        self.name, self.threads = name, threads
        self.answers: list[tuple[float, str | None, int]] = []  # (time, model_version, status)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, seed: int):
        inputs = rows(200)
        url = f"http://127.0.0.1:{INGRESS_PORT}/v2/models/{self.name}/infer"
        with httpx.Client(timeout=10, headers={"Host": host(self.name)}) as client:
            i = seed
            while not self._stop.is_set():
                body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30],
                                    "data": inputs[i % len(inputs)].tolist()}]}
                i += self.threads
                try:
                    resp = client.post(url, json=body)
                    version = resp.json().get("model_version") if resp.status_code == 200 else None
                    self.answers.append((time.time(), version, resp.status_code))
                    if resp.status_code != 200:
                        self.errors.append(f"{resp.status_code}: {resp.text[:200]}")
                except Exception as exc:  # any failure counts
                    self.answers.append((time.time(), None, 0))
                    self.errors.append(repr(exc))

    def __enter__(self):
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        for t in self._workers:
            t.join(timeout=15)


ALIAS = "canary-moving"
# the flipped version's own canary: the registry gate and the replay would refuse it before any traffic
LIVE_ALONE = {"registry": {"enabled": False}, "replay": {"enabled": False}}
# each test's ModelDeployment, its first version made Ready by `stable` for all of them at once
FIRST = {"promoted": {}, "faulty": {}, "shifted": {}, "idle": {}, "manual": {},
         "moving": {"steps": [{"weight": 10, "pauseSeconds": 3600}], "alias": ALIAS, "analysis": LIVE_ALONE}}


@pytest.fixture(scope="module")
def stable(operator, namespace, registry, canaried) -> dict[str, str]:
    """Every test's ModelDeployment Ready on the good version (a first version rolls out as with rolling),
    reachable through the Gateway (its route comes with it): started together, they share one export."""
    from modelops_training.registry import set_alias

    set_alias(MODEL, ALIAS, canaried["good"], tracking_uri=registry["local"])
    for name, spec in FIRST.items():
        apply(namespace, manifest(name, canaried["good"], **spec))
    for name in FIRST:
        st = wait_settled(namespace, name, canaried["good"])
        assert st["phase"] == "Ready", st
        wait_until(f"the Gateway to route {host(name)}", lambda n=name: httpx.get(
            f"http://127.0.0.1:{INGRESS_PORT}/v2/models/{n}", headers={"Host": host(n)}, timeout=5
        ).status_code == 200, timeout=60, ignore=(httpx.HTTPError,))
    return canaried


def weights(namespace: str, name: str) -> list[tuple[str, int]]:
    route = kget("httproute", name, namespace)
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def canary_replicas(namespace: str, name: str) -> int:
    return (kget("deployment", f"{name}-canary", namespace) or {}).get("spec", {}).get("replicas", 0)


def record_steps(namespace: str, name: str, until: threading.Event, seen: list[tuple[float, int | None]]) -> None:
    """(time, weight) each time the running canary's weight changes, then (time, None) when the phase
    leaves Canary (the stable pods start moving to the version), until `until` is set."""
    last = None
    while not until.is_set():
        st = status(namespace, name)
        if st.get("phase") == "Canary" and (st.get("canary") or {}).get("weight") != last:
            last = st["canary"]["weight"]
            seen.append((time.time(), last))
        elif st.get("phase") != "Canary" and last is not None:
            seen.append((time.time(), None))
            return
        time.sleep(0.2)


def test_a_good_canary_is_promoted_through_every_step_with_the_weights_it_was_given(
        namespace, registry, stable):
    name = "promoted"
    steps = [{"weight": 20, "analysisSeconds": 15}, {"weight": 50, "analysisSeconds": 15}]
    changes: list[tuple[float, int]] = []
    done = threading.Event()
    watcher = threading.Thread(target=record_steps, args=(namespace, name, done, changes), daemon=True)
    with GatewayLoad(name) as load:
        time.sleep(1)
        watcher.start()
        apply(namespace, manifest(name, stable["honest"], steps))
        st = wait_settled(namespace, name, stable["honest"], timeout=300)
        done.set()
        time.sleep(2)
    assert st["phase"] == "Ready" and st["modelVersion"] == stable["honest"], st
    assert load.errors == [], load.errors[:5]
    assert [w for _, w in changes] == [20, 50, None], changes

    # each step's share of the Gateway's answers, from 2 s after its weight was set to the next step
    for (start, weight), (end, _) in zip(changes, changes[1:], strict=False):
        window = [v for t, v, _ in load.answers if start + 2 < t < end]
        share = 100 * sum(v == stable["honest"] for v in window) / max(1, len(window))
        assert len(window) >= 1000, (weight, len(window))
        assert abs(share - weight) <= 5, (weight, share, len(window))
    after = [v for t, v, _ in load.answers if t > time.time() - 1.5]
    assert set(after) == {stable["honest"]}, Counter(after)  # the stable pods now serve the version
    assert weights(namespace, name) == [(name, 100), (f"{name}-canary", 0)]
    assert canary_replicas(namespace, name) == 0
    reasons = [e["reason"] for e in events(namespace, name)]
    assert reasons.count("CanaryStep") >= 2 and "CanaryPassed" in reasons, reasons


def test_a_canary_answering_5_percent_5xx_is_aborted_at_its_first_analysis(namespace, registry, stable):
    name = "faulty"
    with GatewayLoad(name) as load:
        time.sleep(1)
        # the same version with the server's test-only fault injection: every 20th request a 500
        apply(namespace, manifest(name, stable["honest"], [{"weight": 50, "analysisSeconds": 60}], env=[FAULT]))
        st = wait_settled(namespace, name, stable["honest"], timeout=300)
        started = next(t for t, v, _ in load.answers if v == stable["honest"])
        time.sleep(2)
    assert st["phase"] == "RolledBack" and st["modelVersion"] == stable["good"], st
    assert (st["canary"]["step"], st["canary"]["outcome"]) == (0, "Fail"), st["canary"]
    live = st["canary"]["analysis"]
    assert live["reason"] == "ErrorRateIncreased", live
    assert condition_reason(st) == "CanaryFailed"
    aborted_at = max(t for t, v, _ in load.answers if v == stable["honest"])
    assert aborted_at - started < 30, aborted_at - started  # within the first step's window, not at its end
    failed = [e for e in load.errors if "fault" in e]
    assert failed and len(failed) == len(load.errors), load.errors[:5]  # only the canary's injected faults
    assert weights(namespace, name) == [(name, 100), (f"{name}-canary", 0)]
    assert canary_replicas(namespace, name) == 0
    after = [v for t, v, _ in load.answers if t > time.time() - 1.5]
    assert set(after) == {stable["good"]}, Counter(after)
    assert any(e["reason"] == "ErrorRateIncreased" and e["type"] == "Warning" for e in events(namespace, name))
    tags = version_tags(registry, stable["honest"], MODEL)
    assert tags["modelops.verdict"] == "Fail" and "ErrorRateIncreased" in tags["modelops.verdict_reason"], tags


def condition_reason(st: dict) -> str:
    return next(c["reason"] for c in st["conditions"] if c["type"] == "Ready")


def test_a_canary_whose_predictions_shift_is_aborted_by_the_distribution_test(namespace, stable):
    name = "shifted"
    # the live analysis alone judges it (LIVE_ALONE)
    with GatewayLoad(name) as load:
        time.sleep(1)
        apply(namespace, manifest(name, stable["flipped"], [{"weight": 50, "analysisSeconds": 60}], LIVE_ALONE))
        st = wait_settled(namespace, name, stable["flipped"], timeout=300)
    assert st["phase"] == "RolledBack" and st["modelVersion"] == stable["good"], st
    live = st["canary"]["analysis"]
    assert live["reason"] == "PredictionsShifted", live
    assert load.errors == [], load.errors[:5]  # a shifted canary answers; it answers differently


def test_a_canary_without_traffic_is_held_then_aborted_by_the_plugin(namespace, stable):
    name = "idle"
    apply(namespace, manifest(name, stable["honest"], [{"weight": 20, "analysisSeconds": 5}],
                              {"live": {**LIVE, "maxDurationSeconds": 10}}))
    held = wait_until("the canary to be held", lambda: (s := status(namespace, name)).get("phase") == "Held" and s,
                      timeout=240)
    assert held["canary"]["analysis"]["verdict"] == "Inconclusive", held["canary"]
    assert held["canary"]["weight"] == 20 and weights(namespace, name)[1] == (f"{name}-canary", 20)
    shown = plugin("status", name, "-n", namespace).stdout
    assert "Canary:     version" in shown and "at 20%" in shown, shown
    plugin("abort", name, "-n", namespace)
    st = wait_settled(namespace, name, stable["honest"], timeout=120)
    assert st["phase"] == "RolledBack" and st["modelVersion"] == stable["good"], st
    assert condition_reason(st) == "AbortRequested"
    assert weights(namespace, name)[1] == (f"{name}-canary", 0) and canary_replicas(namespace, name) == 0


def test_a_running_canary_is_promoted_by_the_plugin_at_its_first_step(namespace, stable):
    name = "manual"
    with GatewayLoad(name) as load:
        apply(namespace, manifest(name, stable["honest"], [{"weight": 10, "pauseSeconds": 3600}]))
        wait_until("the first step", lambda: (status(namespace, name).get("canary") or {}).get("weight") == 10
                   and status(namespace, name).get("phase") == "Canary", timeout=240)
        plugin("promote", name, "-n", namespace)
        st = wait_settled(namespace, name, stable["honest"], timeout=180)
        time.sleep(2)
    assert st["phase"] == "Ready" and st["modelVersion"] == stable["honest"], st
    assert load.errors == [], load.errors[:5]
    assert st["analysis"]["verdict"] == "Promoted", st["analysis"]
    assert any(e["reason"] == "Promoted" for e in events(namespace, name))
    assert json.loads(json.dumps(weights(namespace, name))) == [[name, 100], [f"{name}-canary", 0]]


def test_an_alias_move_during_a_canary_supersedes_it_and_a_new_canary_starts_from_the_stable(
        namespace, registry, stable):
    from modelops_training.registry import set_alias

    name, alias = "moving", ALIAS
    # the registry gate and the replay would refuse the flipped version before its canary starts

    def canary_of(version):
        st = status(namespace, name)
        c = st.get("canary") or {}
        return st.get("phase") == "Canary" and c.get("version") == version and c.get("weight") == 10 and st

    def template_version(deployment):
        dep = kget("deployment", deployment, namespace)
        return dep["spec"]["template"]["metadata"]["annotations"]["modelops.io/model-version"]

    with GatewayLoad(name) as load:
        set_alias(MODEL, alias, stable["honest"], tracking_uri=registry["local"])
        wait_until("the canary of the alias's version", lambda: canary_of(stable["honest"]), timeout=240)
        set_alias(MODEL, alias, stable["flipped"], tracking_uri=registry["local"])
        st = wait_until("a new canary of the moved alias", lambda: canary_of(stable["flipped"]), timeout=240)
        assert template_version(f"{name}-canary") == stable["flipped"]
        assert template_version(name) == stable["good"] and st["lastGoodModelVersion"] == stable["good"]
        wait_until("the new canary's share", lambda: stable["flipped"] in {v for _, v, _ in load.answers[-200:]},
                   timeout=60)
        plugin("abort", name, "-n", namespace)
        st = wait_until("the abort", lambda: (s := status(namespace, name)).get("phase") == "RolledBack" and s,
                        timeout=120)
        time.sleep(2)
    assert st["modelVersion"] == stable["good"], st
    assert load.errors == [], load.errors[:5]
    assert any(e["reason"] == "Superseded" and "alias moved" in e["message"] for e in events(namespace, name))
    after = [v for t, v, _ in load.answers if t > time.time() - 1.5]
    assert set(after) == {stable["good"]}, Counter(after)
