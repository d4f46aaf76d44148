"""Fixtures for tests of the local Kubernetes itself (hack/cluster): kubectl against the cluster in
KUBECONFIG (default: the local cluster's .data/cluster/kubeconfig), one namespace per test, and
workloads that run the locally built Debian + Python base image, never a pulled one."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .. import support

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = os.environ.get("KUBECONFIG") or str(ROOT / ".data/cluster/kubeconfig")
INGRESS_PORT = int(os.environ.get("MODELOPS_INGRESS_PORT", "30080"))
BASE_IMAGE = os.environ.get("BASE_IMAGE_TAG", "local/python-base:bookworm")


def kubectl(*args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("kubectl", path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    assert exe, "kubectl not found: run `make setup`"
    res = subprocess.run([exe, "--kubeconfig", KUBECONFIG, *args], input=stdin, text=True,
                         capture_output=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res


def kget(*args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


# polls until fn returns something truthy and returns it; a failed kubectl or a half-written object
# counts as one more try
wait_until = functools.partial(support.wait_until, timeout=120, interval=1,
                               ignore=(AssertionError, subprocess.SubprocessError, OSError, ValueError, KeyError))


def condition(obj: dict[str, Any], kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of the object's condition of that type, None without one."""
    return next((c["status"] for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), None)


def http_get(url: str, host: str | None = None, timeout: float = 5) -> str:
    """The body of a GET, stripped; `host` sets the Host header (how the ingress port routes)."""
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode().strip()


@pytest.fixture(scope="session")
def cluster() -> str:
    res = kubectl("get", "--raw", "/readyz", check=False, timeout=20)
    assert res.returncode == 0, (
        f"no cluster answers with {KUBECONFIG}: start it with `make cluster-up` (make test does). {res.stderr.strip()}"
    )
    return KUBECONFIG


@pytest.fixture
def namespace(cluster) -> Iterator[str]:
    ns = f"ct-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    # pods in a fresh namespace need its default service account
    wait_until("default service account",
               lambda: kubectl("-n", ns, "get", "sa", "default", check=False).returncode == 0)
    yield ns
    # pytest shows this only for a failed test: what the cluster said while it ran
    print(kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout)
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def web_container(name: str = "web", *, port: int = 8080, readiness_path: str = "/", script: str | None = None,
                  cpu: str | None = None) -> dict[str, Any]:
    """A container of the local base image serving HTTP with Python: by default `python3 -m http.server`
    over a folder whose index.html holds the pod's name, so responses tell which pod answered."""
    if script is None:
        cmd = ["sh", "-c", f"mkdir -p /srv && echo $HOSTNAME >/srv/index.html && cd /srv && "
                           f"exec python3 -m http.server {port}"]
    else:
        cmd = ["python3", "-u", "-c", script]
    c: dict[str, Any] = {
        "name": name, "image": BASE_IMAGE, "imagePullPolicy": "Never", "command": cmd,
        "ports": [{"containerPort": port, "name": "http"}],
        # lenient enough that a slow machine never flaps a ready pod; a failing probe still fails at once
        "readinessProbe": {"httpGet": {"path": readiness_path, "port": port}, "periodSeconds": 1,
                           "timeoutSeconds": 5, "failureThreshold": 3},
    }
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    return c


def deployment(name: str, containers: list[dict[str, Any]], *, replicas: int = 1,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {"app": name, **(labels or {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": containers, "terminationGracePeriodSeconds": 1}}},
    }


def service(name: str, selector: dict[str, str], *, port: int = 80, target: int = 8080) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"port": port, "targetPort": target}]}}


def apply(ns: str, *objs: dict[str, Any]) -> None:
    kubectl("-n", ns, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))
