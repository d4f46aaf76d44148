"""The operator's children on the real cluster: a same-named object of someone else's is reported and
left alone, a child the API server rejects settles the attempt as InvalidSpec, and an Ingress without a
host gets <name>.<namespace>.<domain>.

Tests run in file order and share one namespace and one operator process.
"""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import INGRESS_PORT, kget, kubectl
from .test_e2e import apply, condition, manifest, routed, wait_settled

pytestmark = pytest.mark.cluster
DOMAIN = "modelops.test"


@pytest.fixture(scope="module")
def operator_env() -> dict[str, str]:
    return {"MODELOPS_INGRESS_DOMAIN": DOMAIN}


def foreign(namespace: str, kind: str, name: str) -> dict:
    """An object someone else made under the ModelDeployment's name (no owner)."""
    if kind == "Service":
        obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"team": "web"}},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}}
    else:
        obj = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
               "spec": {"rules": [{"host": f"{name}.web.example", "http": {"paths": [
                   {"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}
    kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    return kget(kind.lower(), name, namespace)


def assert_untouched(before: dict, namespace: str) -> None:
    after = kget(before["kind"].lower(), before["metadata"]["name"], namespace)
    assert after is not None, f"{before['kind']} {before['metadata']['name']} was deleted"
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], after
    assert not after["metadata"].get("ownerReferences"), after["metadata"]


def serving_version(namespace: str, name: str) -> str:
    dep = kget("deployment", name, namespace)
    return dep["spec"]["template"]["metadata"]["annotations"]["modelops.io/model-version"]


def test_a_foreign_service_with_the_name_fails_the_attempt_naming_it_and_nothing_is_touched(
        operator, namespace, versions):
    svc = foreign(namespace, "Service", "taken")
    apply(namespace, manifest("taken", model={"version": versions["v1"]}))
    st = wait_settled(namespace, "taken", timeout=240)
    assert st["phase"] == "Failed", st
    degraded = condition(st, "Degraded")
    assert degraded["reason"] == "Conflict", degraded
    assert f"Service {namespace}/taken exists and is not controlled by this ModelDeployment" in degraded["message"]
    assert "no owner" in degraded["message"]
    assert_untouched(svc, namespace)
    assert kget("deployment", "taken", namespace) is None


def test_a_foreign_ingress_is_never_deleted_as_a_child_the_spec_no_longer_asks_for(operator, namespace, versions):
    ing = foreign(namespace, "Ingress", "keeper")
    apply(namespace, manifest("keeper", model={"version": versions["v1"]}))
    st = wait_settled(namespace, "keeper", versions["v1"], timeout=300)
    assert st["phase"] == "Ready", st
    assert_untouched(ing, namespace)


def test_a_conflict_on_a_new_version_keeps_the_last_good_one_serving(operator, namespace, versions):
    ing = kget("ingress", "keeper", namespace)
    apply(namespace, manifest("keeper", model={"version": versions["v2"]}, ingress={"host": "keeper.modelops.test"}))
    st = wait_settled(namespace, "keeper", versions["v2"], timeout=300)
    assert (st["phase"], st["modelVersion"]) == ("RolledBack", versions["v1"]), st
    assert condition(st, "RolledBack")["reason"] == "Conflict"
    assert f"Ingress {namespace}/keeper" in condition(st, "RolledBack")["message"]
    assert_untouched(ing, namespace)
    assert serving_version(namespace, "keeper") == versions["v1"]


def test_a_child_the_api_server_rejects_settles_as_invalid_spec_and_the_last_good_version_serves(
        operator, namespace, versions):
    apply(namespace, manifest("keeper", model={"version": versions["v2"]}, serving={
        "imagePullPolicy": "Never", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}))
    st = wait_settled(namespace, "keeper", versions["v2"], timeout=180)
    assert (st["phase"], st["modelVersion"]) == ("RolledBack", versions["v1"]), st
    rolled_back = condition(st, "RolledBack")
    assert rolled_back["reason"] == "InvalidSpec", rolled_back
    assert "must be less than or equal to cpu limit" in rolled_back["message"], rolled_back
    assert serving_version(namespace, "keeper") == versions["v1"]


def test_an_ingress_without_a_host_is_served_at_name_namespace_domain(operator, namespace, versions):
    apply(namespace, manifest("hosted", model={"version": versions["v1"]}, ingress={}))
    st = wait_settled(namespace, "hosted", versions["v1"], timeout=300)
    assert st["phase"] == "Ready", st
    host = f"hosted.{namespace}.{DOMAIN}"
    assert st["url"] == f"http://{host}/v2/models/hosted"
    assert [r["host"] for r in kget("ingress", "hosted", namespace)["spec"]["rules"]] == [host]
    meta = routed(host, lambda: httpx.get(f"http://127.0.0.1:{INGRESS_PORT}/v2/models/hosted",
                                          headers={"Host": host}, timeout=10))
    assert meta.json()["versions"] == [versions["v1"]]
