"""Attempts superseded mid-flight, on the real cluster: an edit, and a delete-and-recreate, while a
version that can never become available is rolling out. Without superseding, each waits out the
version's whole progress deadline (and then its rollback) before the user's next spec is read."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ..support import wait_until
from .conftest import kubectl
from .test_e2e import apply, condition, manifest, status, wait_settled

pytestmark = pytest.mark.cluster
STUCK_DEADLINE = 600  # far beyond every wait below: only superseding can end the stuck attempt in time
NEVER_AVAILABLE = {"image": "modelops/never-pulled:none", "imagePullPolicy": "Never"}


def stuck(name: str, version: str) -> dict:
    obj = manifest(name, model={"version": version}, rollout={"progressDeadlineSeconds": STUCK_DEADLINE})
    obj["spec"]["serving"] = NEVER_AVAILABLE
    return obj


def wait_rolling_out(namespace: str, name: str) -> None:
    wait_until(f"{name} rolling out", lambda: status(namespace, name).get("phase") == "RollingOut", timeout=240)


def event_reasons(namespace: str, name: str) -> set[str]:
    events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                                f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    return {e["reason"] for e in events}


def test_an_edit_during_a_rollout_supersedes_it_within_seconds(operator, namespace, versions):
    apply(namespace, stuck("edited", versions["v1"]))
    wait_rolling_out(namespace, "edited")
    time.sleep(3)  # well inside the stuck attempt's wait
    edited = manifest("edited", model={"version": versions["v2"]})
    applied = time.monotonic()
    apply(namespace, edited)
    wait_until("the new attempt", lambda: status(namespace, "edited").get("targetModelVersion") == versions["v2"],
               timeout=30)
    took = time.monotonic() - applied
    st = wait_settled(namespace, "edited", versions["v2"], timeout=300)
    assert st["phase"] == "Ready" and st["modelVersion"] == versions["v2"], st
    assert took < 15, f"the edit took {took:.1f} s to start its attempt"
    assert "Superseded" in event_reasons(namespace, "edited")
    ready = condition(st, "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == st["observedGeneration"], ready


def test_a_new_attempt_resets_the_last_versions_conditions(operator, namespace, versions):
    """While the next version's attempt runs, Available/Verified of the version before are not True."""
    apply(namespace, stuck("edited", versions["v1"]))
    wait_rolling_out(namespace, "edited")
    st = status(namespace, "edited")
    assert condition(st, "Ready")["status"] == "Unknown", st["conditions"]
    assert condition(st, "Verified")["status"] == "Unknown", st["conditions"]
    assert condition(st, "Available")["status"] == "Unknown", st["conditions"]
    kubectl("delete", "modeldeployment", "edited", "-n", namespace, "--wait=true")


def test_delete_and_recreate_mid_rollout_never_lets_the_old_attempt_write_the_new_object(
        operator, namespace, versions):
    apply(namespace, stuck("recreated", versions["v1"]))
    wait_rolling_out(namespace, "recreated")
    kubectl("delete", "modeldeployment", "recreated", "-n", namespace, "--wait=true")
    apply(namespace, manifest("recreated", model={"version": versions["v2"]}))
    seen, stop = set(), threading.Event()

    def watch_targets():  # every target the new object ever shows
        while not stop.is_set():
            seen.add(status(namespace, "recreated").get("targetModelVersion"))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch_targets, daemon=True)
    watcher.start()
    try:
        st = wait_settled(namespace, "recreated", versions["v2"], timeout=300)
        time.sleep(5)  # the old attempt, were it still running, would write now
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert st["phase"] == "Ready", st
    assert status(namespace, "recreated")["phase"] == "Ready"
    assert seen - {None} == {versions["v2"]}, seen
