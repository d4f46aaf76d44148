"""The CRD's own rules, asked of the real API server (server-side dry run: nothing is stored): each rule
refuses its bad object with a message naming the field and the fix, and lets the good one through."""

from __future__ import annotations

import json

import pytest
import yaml

from ..operator.conftest import ROOT, cluster, kubectl  # noqa: F401 (cluster: the fixture that installs the CRD)
from ..support import wait_until

pytestmark = pytest.mark.cluster
CRD = ROOT / "crds" / "modelops.io_modeldeployments.yaml"


def served_schema() -> dict:
    crd = json.loads(kubectl("get", "crd", "modeldeployments.modelops.io", "-o", "json").stdout)
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.fixture(autouse=True)
def this_crd(cluster):  # noqa: F811
    """The cluster is shared: another checkout's tests may have applied their copy of the CRD since the
    session's. Put this one back before each case and wait until the API server serves it."""
    ours = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    if served_schema() != ours:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        wait_until("this CRD to be served", lambda: served_schema() == ours, timeout=30)
        wait_until("its rules to be enforced", lambda: dry_run("a" * 64).returncode != 0, timeout=30)


def dry_run(name: str = "cancer", **spec):
    obj = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
           "spec": {"model": {"name": "cancer", "version": "1"}, **spec}}
    return kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-", stdin=json.dumps(obj), check=False)


@pytest.mark.parametrize("name, kwargs", [
    ("a" * 63, {}),
    ("cancer-v2", {"serving": {"env": [{"name": "MODELOPS_LOG_LEVEL", "value": "debug"},
                                       {"name": "X", "value": "1"}]}}),
    ("cancer", {"rollout": {"maxSurge": 0, "maxUnavailable": 1}}),
    ("cancer", {"rollout": {"maxSurge": "25%", "maxUnavailable": "0%"}}),
    ("a" * 56, {"rollout": {"strategy": "canary", "canary": {"steps": [
        {"weight": 10, "analysisSeconds": 30}, {"weight": 50, "pauseSeconds": 0}]}}, "gateway": {}}),
    ("cancer", {"retrain": {"template": {"metadata": {"labels": {"team": "ml"}}, "spec": {
        "containers": [{"name": "train", "image": "modelops/training:dev", "command": ["true"]}],
        "nodeSelector": {"pool": "cpu"}}}, "cooldownSeconds": 0, "activeDeadlineSeconds": 600}}),
], ids=["63-characters", "user-env", "surge-0-unavailable-1", "percentages", "canary-56-characters", "retrain"])
def test_a_valid_modeldeployment_passes(name, kwargs):
    res = dry_run(name, **kwargs)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name, kwargs, message", [
    ("a" * 64, {}, "metadata.name must be at most 63 characters"),
    ("a" * 57, {"rollout": {"strategy": "canary"}, "gateway": {}},
     "at most 56 characters with spec.rollout.strategy canary"),
    ("cancer", {"rollout": {"strategy": "canary"}},
     "spec.rollout.strategy canary splits traffic through an HTTPRoute"),
    ("cancer", {"rollout": {"strategy": "canary", "canary": {"steps": [{"weight": 10}]}}, "gateway": {}},
     "sets exactly one of analysisSeconds"),
    ("cancer", {"rollout": {"strategy": "canary", "canary": {"steps": [
        {"weight": 10, "analysisSeconds": 5, "pauseSeconds": 5}]}}, "gateway": {}},
     "sets exactly one of analysisSeconds"),
    ("9lives", {}, "metadata.name must be a DNS label"),
    ("cancer.v2", {}, "metadata.name must be a DNS label"),
    ("cancer", {"serving": {"env": [{"name": "MODELOPS_MODEL_URI", "value": "s3://elsewhere"}]}},
     "spec.serving.env must not set a variable the operator sets itself"),
    ("cancer", {"serving": {"env": [{"name": "MLFLOW_TRACKING_URI", "value": "http://elsewhere"}]}},
     "spec.serving.env must not set a variable the operator sets itself"),
    ("cancer", {"serving": {"env": [{"name": "X", "value": "1"}, {"name": "X", "value": "2"}]}},
     "spec.serving.env[1]: Duplicate value"),
    ("cancer", {"serving": {"env": [{"value": "1"}]}}, "spec.serving.env[0].name: Required value"),
    ("cancer", {"rollout": {"maxSurge": 0, "maxUnavailable": 0}},
     "spec.rollout.maxSurge and spec.rollout.maxUnavailable must not both be 0"),
    ("cancer", {"rollout": {"maxSurge": "0%", "maxUnavailable": 0}},
     "spec.rollout.maxSurge and spec.rollout.maxUnavailable must not both be 0"),
    ("cancer", {"retrain": {"template": {"spec": {"containers": []}}}}, "spec.retrain.template.spec.containers"),
    ("cancer", {"retrain": {"template": {"spec": {"containers": [{"name": "train"}]}}}},
     "spec.retrain.template.spec.containers[0].image: Required value"),
    ("cancer", {"retrain": {"cooldownSeconds": 60}}, "spec.retrain.template: Required value"),
    ("cancer", {"retrain": {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
                            "cooldownSeconds": -1}}, "spec.retrain.cooldownSeconds"),
    ("cancer", {"retrain": {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
                            "maxConcurrent": 0}}, "spec.retrain.maxConcurrent"),
], ids=["64-characters", "canary-57-characters", "canary-without-gateway", "step-without-kind", "step-with-both",
        "leading-digit", "dots", "reserved-env", "reserved-tracking-uri", "duplicate-env",
        "env-without-name", "no-surge-no-unavailable", "zero-percent", "retrain-no-containers",
        "retrain-no-image", "retrain-no-template", "retrain-negative-cooldown", "retrain-zero-concurrent"])
def test_an_invalid_modeldeployment_is_refused_naming_the_field(name, kwargs, message):
    res = dry_run(name, **kwargs)
    assert res.returncode != 0, f"accepted: {name} {kwargs}"
    assert message in res.stderr, res.stderr
