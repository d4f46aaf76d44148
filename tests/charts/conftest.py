"""Helpers for the chart's tests: render charts/modelops with the real helm binary (.tools/bin, from
`make setup`) and read the result as Python objects."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/modelops"
ALL_ON = CHART / "ci/all-on-values.yaml"
NAMESPACED = CHART / "ci/namespaced-values.yaml"
AUTH = CHART / "ci/auth-values.yaml"
VALUES_FILES = {"default": None, "all-on": ALL_ON, "namespaced": NAMESPACED, "auth": AUTH}
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PodMonitor",
                   "monitoring.coreos.com/v1/PrometheusRule", "monitoring.coreos.com/v1alpha1/AlertmanagerConfig")
RELEASE, NAMESPACE = "modelops", "modelops-system"


def tool(name: str) -> str:
    exe = shutil.which(name, path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    if not exe:
        pytest.skip(f"{name} not found: run `make setup`")
    return exe


def helm(*args: str, check: bool = True, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([tool("helm"), *args], text=True, capture_output=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{res.stderr}")
    return res


def template_args(values: Path | None = None, *, sets: dict[str, str] | None = None, monitoring: bool = True,
                  release: str = RELEASE, namespace: str = NAMESPACE) -> list[str]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    if values:
        args += ["-f", str(values)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    if monitoring:
        for api in MONITORING_APIS:
            args += ["--api-versions", api]
    return args


def render_text(values: Path | None = None, **kw) -> str:
    return helm(*template_args(values, **kw)).stdout


def render(values: Path | None = None, **kw) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(values, **kw)) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} rendered"
    return found[0]


def pod_spec(workload: dict) -> dict:
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
