"""Behaviour verdicts on the real cluster: fully trained versions, a real MLflow, the operator as a
process, a client sending requests all along. A bad version is refused before any user request
reaches it; an honest retrain ships; an Inconclusive one is held until a person promotes it."""

from __future__ import annotations

import json
import os
import subprocess
import time

import httpx
import pytest

from .conftest import KUBECONFIG, ROOT, kget, kubectl, wait_until
from .test_e2e import Load, apply, condition, service_url, status, wait_settled

pytestmark = pytest.mark.cluster
MODEL = "verdicts-cancer"


@pytest.fixture(scope="module")
def judged(registry) -> dict[str, str]:
    """Fully trained breast-cancer versions: good (seed 0), an honest retrain (seed 1), and three bad
    ones that export and pass their own parity and smoke checks: constant, 20 % flipped, 1 epoch."""
    from modelops_training.registry import set_alias
    from modelops_training.train import TrainConfig, train

    made = {}
    for label, seed, epochs, sabotage in (("good", 0, None, None), ("honest", 1, None, None),
                                          ("constant", 2, None, "constant"), ("flipped", 3, None, "flip=0.2"),
                                          ("weak", 4, 1, None)):
        result = train(TrainConfig(dataset="breast_cancer", epochs=epochs, seed=seed, register=MODEL,
                                   sabotage=sabotage, progress=False, tracking_uri=registry["local"]))
        made[label] = result.version
        made[f"{label}-run"] = result.run_id
    set_alias(MODEL, "champion", made["good"], tracking_uri=registry["local"])
    return made


def manifest(name: str, model: dict, **spec) -> dict:
    return {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"name": MODEL, **model}, "serving": {"imagePullPolicy": "Never"},
                     "rollout": {"progressDeadlineSeconds": 90}, **spec}}


def events(namespace: str, name: str) -> list[dict]:
    return json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                              f"involvedObject.name={name}", "-o", "json").stdout)["items"]


def version_tags(registry: dict, version: str, model: str = MODEL) -> dict[str, str]:
    """The MLflow version's tags once the operator's verdict tags are there (written in the background)."""
    from modelops_registry.client import client

    def tagged():
        tags = dict(client(registry["local"]).get_model_version(model, version).tags)
        return "modelops.verdict" in tags and tags

    return wait_until(f"version {version}'s verdict tags", tagged, timeout=30)


def plugin(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`kubectl modelops ...` as a user runs it: kubectl finds the plugin on PATH (make setup puts it in .venv/bin)."""
    env = {**os.environ, "KUBECONFIG": KUBECONFIG,
           "PATH": f"{ROOT}/.venv/bin:{ROOT}/.tools/bin:{os.environ['PATH']}"}
    return subprocess.run(["kubectl", "modelops", *args], env=env, text=True, capture_output=True,
                          check=check, timeout=60)


def traffic(namespace: str, name: str, rows: int = 120) -> None:
    """Production requests (single rows of the dataset) the serving pods sample."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer().data.astype("float32")
    base = service_url(namespace, name)
    with httpx.Client(timeout=10) as client:
        for row in data[:rows]:
            body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": row.tolist()}]}
            assert client.post(f"{base}/v2/models/{name}/infer", json=body).status_code == 200


@pytest.fixture(scope="module")
def follower(operator, namespace, registry, judged) -> str:
    """One ModelDeployment following the alias, Ready on the good version; each bad version is moved to in turn."""
    from modelops_training.registry import set_alias

    set_alias(MODEL, "champion", judged["good"], tracking_uri=registry["local"])
    apply(namespace, manifest("follower", {"alias": "champion"}))
    assert wait_settled(namespace, "follower", judged["good"])["phase"] == "Ready"
    return "follower"


@pytest.fixture(scope="module")
def replayed(operator, namespace, judged) -> str:
    """One ModelDeployment with the registry gate off (the replay alone must judge), Ready on the good
    version, with production traffic its pods sampled; each bad version is applied to it in turn."""
    apply(namespace, manifest("replayed", {"version": judged["good"]}, **REPLAY_ONLY))
    assert wait_settled(namespace, "replayed", judged["good"])["phase"] == "Ready"
    traffic(namespace, "replayed")
    return "replayed"


REPLAY_ONLY = {"analysis": {"registry": {"enabled": False}}}


@pytest.mark.parametrize("bad", ["constant", "flipped", "weak"])
def test_a_bad_version_behind_an_alias_is_refused_by_its_logged_metrics(follower, namespace, registry, judged, bad):
    from modelops_training.registry import set_alias

    name = follower
    with Load(service_url(namespace, name), name) as load:
        set_alias(MODEL, "champion", judged[bad], tracking_uri=registry["local"])
        st = wait_settled(namespace, name, judged[bad], timeout=240)
    assert st["phase"] == "RolledBack" and st["modelVersion"] == judged["good"], st
    rolled = condition(st, "RolledBack")
    assert rolled["reason"] == "RegistryMetricRegressed", rolled
    assert "test_f1" in rolled["message"] and f"version {judged['good']}" in rolled["message"], rolled
    assert st["analysis"]["verdict"] == "Fail" and st["analysis"]["registry"]["verdict"] == "Fail", st["analysis"]
    assert "exportedAt" not in st["attempt"], st["attempt"]  # refused before its export Job ran
    assert load.failures == [] and load.versions == {judged["good"]}, (load.failures[:3], load.versions)
    assert version_tags(registry, judged[bad])["modelops.verdict"] == "Fail"
    assert any(e["reason"] == "RegistryMetricRegressed" and e["type"] == "Warning" and judged[bad] in e["message"]
               for e in events(namespace, name))


@pytest.mark.parametrize("bad", ["constant", "flipped", "weak"])
def test_the_paired_replay_refuses_a_bad_version_before_any_user_request_reaches_it(
        replayed, namespace, registry, judged, bad):
    name = replayed
    with Load(service_url(namespace, name), name) as load:
        apply(namespace, manifest(name, {"version": judged[bad]}, **REPLAY_ONLY))
        st = wait_settled(namespace, name, judged[bad], timeout=240)
    assert st["phase"] == "RolledBack" and st["modelVersion"] == judged["good"], st
    assert condition(st, "RolledBack")["reason"] == "BehaviourRegressed", condition(st, "RolledBack")
    replay = st["analysis"]["replay"]
    assert st["analysis"]["verdict"] == "Fail" and replay["verdict"] == "Fail", st["analysis"]
    # both kinds of input were replayed: the serving pod's sample of production traffic and the evaluation set
    assert replay["sources"]["production"] > 0 and replay["sources"]["evaluation"] == 114, replay
    assert load.failures == [] and load.versions == {judged["good"]}, (load.failures[:3], load.versions)
    reasons = {e["reason"] for e in events(namespace, name) if e["type"] == "Warning"}
    assert st["analysis"]["reason"] in reasons, reasons
    assert version_tags(registry, judged[bad])["modelops.verdict"] == "Fail"
    # the candidate's pods never passed the readiness gate
    for pod in json.loads(kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}",
                                  "-o", "json").stdout)["items"]:
        if pod["metadata"]["annotations"].get("modelops.io/model-version") == judged[bad]:
            gate = [c for c in pod["status"].get("conditions", []) if c["type"] == "modelops.io/verified"]
            assert not gate or gate[0]["status"] != "True", pod["metadata"]["name"]


def test_an_honest_retrain_passes_both_verdicts_and_ships(operator, namespace, registry, judged):
    name = "honest"
    apply(namespace, manifest(name, {"version": judged["good"]}))
    assert wait_settled(namespace, name, judged["good"])["phase"] == "Ready"
    traffic(namespace, name)
    with Load(service_url(namespace, name), name) as load:
        apply(namespace, manifest(name, {"version": judged["honest"]}))
        st = wait_settled(namespace, name, judged["honest"], timeout=240)
        time.sleep(2)
    assert st["phase"] == "Ready" and st["modelVersion"] == judged["honest"], (st["phase"], st.get("analysis"))
    assert st["analysis"]["verdict"] == "Pass", st["analysis"]
    assert st["analysis"]["registry"]["verdict"] == "Pass" and st["analysis"]["replay"]["verdict"] == "Pass"
    assert load.failures == [] and judged["honest"] in load.versions, load.failures[:3]
    assert version_tags(registry, judged["honest"])["modelops.verdict"] == "Pass"
    from modelops_registry.client import client

    plots = [a.path for a in client(registry["local"]).list_artifacts(judged["honest-run"], "modelops")]
    assert f"modelops/verdict-v{judged['honest']}.svg" in plots, plots
    history = st["history"]
    assert [h["version"] for h in history][-2:] == [judged["good"], judged["honest"]], history
    assert history[-1]["verdict"] == "Pass" and history[-1]["phase"] == "Ready", history


def test_an_inconclusive_verdict_is_held_until_promoted_and_a_rollback_can_be_asked_for(
        operator, namespace, registry, judged):
    name = "held"
    # more rows than the replay can have: Inconclusive (TooFewSamples), held by default
    spec = {"analysis": {"registry": {"enabled": False}, "replay": {"minSamples": 5000}}}
    apply(namespace, manifest(name, {"version": judged["good"]}, **spec))
    assert wait_settled(namespace, name, judged["good"])["phase"] == "Ready"
    refused = plugin("promote", name, "-n", namespace, check=False)
    assert refused.returncode != 0 and "Held" in refused.stderr, refused
    with Load(service_url(namespace, name), name) as load:
        apply(namespace, manifest(name, {"version": judged["honest"]}, **spec))
        held = wait_until("the version to be held", lambda: (s := status(namespace, name)).get("phase") == "Held" and s,
                          timeout=240)
        time.sleep(3)
        assert held["analysis"]["verdict"] == "Inconclusive" and held["analysis"]["reason"] == "TooFewSamples"
        assert condition(held, "Ready")["status"] == "False" and "promote" in condition(held, "Ready")["message"]
        assert load.versions == {judged["good"]}, load.versions  # nobody reaches the held version
        shown = plugin("status", name, "-n", namespace)
        assert "Held" in shown.stdout and "Inconclusive" in shown.stdout, shown.stdout
        plugin("promote", name, "-n", namespace)
        st = wait_settled(namespace, name, judged["honest"], timeout=240)
    assert st["phase"] == "Ready" and st["modelVersion"] == judged["honest"], st
    assert st["analysis"]["verdict"] == "Promoted", st["analysis"]
    assert load.failures == [], load.failures[:3]
    who = json.loads(kubectl("auth", "whoami", "-o", "json").stdout)["status"]["userInfo"]["username"]
    wait_until("the Promoted event", lambda: any(
        e["reason"] == "Promoted" and who in e["message"] for e in events(namespace, name)), timeout=30)
    history = plugin("history", name, "-n", namespace).stdout  # the held attempt's one entry, now Ready
    assert [line.split()[:2] for line in history.splitlines()[-2:]] == [
        [judged["good"], "-"], [judged["honest"], "Promoted"]], history

    plugin("rollback", name, "--to", judged["good"], "-n", namespace)
    st = wait_settled(namespace, name, judged["good"], timeout=240)
    assert st["phase"] == "Ready" and st["modelVersion"] == judged["good"], st
    assert st["analysis"]["verdict"] == "Skipped" and st["analysis"]["reason"] == "RollbackRequested"
    wait_until("the RollbackRequested event", lambda: any(
        e["reason"] == "RollbackRequested" and who in e["message"] for e in events(namespace, name)), timeout=30)
    assert (kget("modeldeployment", name, namespace) or {})["spec"]["model"]["version"] == judged["good"]
