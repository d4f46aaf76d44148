"""The canary's pure decisions: replicas per step, the looks alpha is divided by, when a canary runs,
and what a plugin request means to a running one."""

import pytest

from modelops_operator import canary
from modelops_operator.spec import CanaryStep, ModelDeploymentSpec
from modelops_operator.target import ServingTarget
from modelops_operator.verdicts import Request

TARGET = ServingTarget("4", "runs:/abc/onnx/model.onnx", "f" * 64, "modelops/inference:dev", None)


def spec(strategy="canary"):
    return ModelDeploymentSpec.model_validate({"model": {"name": "m", "version": "4"},
                                               "rollout": {"strategy": strategy}, "gateway": {}})


@pytest.mark.parametrize("stable,weight,want", [(1, 10, 1), (4, 10, 1), (4, 25, 1), (4, 50, 2), (10, 25, 3),
                                                (3, 100, 3), (0, 50, 1)])
def test_the_canary_gets_its_weights_share_of_the_stable_pods_and_at_least_one(stable, weight, want):
    assert canary.canary_replicas(stable, weight) == want


def test_planned_looks_count_every_look_an_analysis_step_can_make_and_no_pause():
    steps = [CanaryStep(weight=10, analysis_seconds=30), CanaryStep(weight=25, pause_seconds=60),
             CanaryStep(weight=50, analysis_seconds=600)]
    # a step looks until its window or, short of traffic, maxDurationSeconds: the longer of the two
    assert canary.planned_looks(steps, interval_seconds=5, max_duration_seconds=300) == 60 + 120
    assert canary.planned_looks([CanaryStep(weight=10, pause_seconds=5)], 5, 300) == 1


def test_the_default_steps_are_10_25_50_with_30s_of_analysis_each():
    assert [(s.weight, s.analysis_seconds) for s in spec().rollout.canary.steps] == [(10, 30), (25, 30), (50, 30)]


def test_a_canary_runs_only_for_a_new_target_beside_a_verified_one():
    verified = {"lastGood": {"targetHash": "other"}}
    assert canary.applies(spec(), verified, TARGET)
    assert not canary.applies(spec(), {}, TARGET)  # a first version: nothing to compare it with
    assert not canary.applies(spec(), {"lastGood": {"targetHash": TARGET.hash()}}, TARGET)  # already serving
    assert not canary.applies(spec("rolling"), verified, TARGET)


@pytest.mark.parametrize("req,want", [
    (Request("promote", "4", "ann", "r1"), "promote"),
    (Request("abort", "4", "ann", "r1"), "abort"),
    (Request("abort", "3", "ann", "r1"), None),     # aimed at another version
    (Request("abort", "4", "ann", "done"), None),   # acted on already
    (Request("rollback", "4", "ann", "r1"), None),  # a rollback is a spec change: it supersedes instead
    (None, None),
])
def test_a_plugin_request_acts_once_and_only_on_the_canarys_version(req, want):
    assert canary.request_during(req, "4", handled="done") == want


def test_the_operators_gateway_is_a_parent_ref_and_a_malformed_one_stops_it():
    from modelops_operator.config import OperatorConfig, parent_ref

    assert OperatorConfig.from_env({"MODELOPS_GATEWAY": "traefik/modelops"}).gateway == {
        "namespace": "traefik", "name": "modelops"}
    assert parent_ref("traefik/modelops/web") == {"namespace": "traefik", "name": "modelops", "sectionName": "web"}
    assert OperatorConfig.from_env({}).gateway is None
    for bad in ("modelops", "a//b", "a/b/c/d"):
        with pytest.raises(ValueError, match="MODELOPS_GATEWAY.*<namespace>/<name>"):
            parent_ref(bad)


ROUTE = {"spec": {"rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": [
    {"name": "m", "port": 80, "weight": 75}, {"name": "m-canary", "port": 80, "weight": 25}]}]}}


def test_the_canarys_weight_is_read_off_the_route_and_set_to_zero_without_the_spec():
    assert canary.route_weight(ROUTE, "m") == 25
    rules = canary.without_canary(ROUTE["spec"]["rules"], "m")
    assert [(b["name"], b["weight"]) for b in rules[0]["backendRefs"]] == [("m", 100), ("m-canary", 0)]
    assert rules[0]["matches"] == ROUTE["spec"]["rules"][0]["matches"]
    assert canary.route_weight({"spec": {"rules": rules}}, "m") == 0
    assert canary.route_weight({"spec": {}}, "m") == 0


def test_a_canary_pod_belongs_to_its_modeldeployment_not_to_one_named_like_its_deployment():
    from modelops_operator.manifests import owner_of

    assert owner_of({"app.kubernetes.io/instance": "m-canary", "modelops.io/track": "canary"}) == "m"
    assert owner_of({"app.kubernetes.io/instance": "m-canary"}) == "m-canary"  # a ModelDeployment named so


def pod(track=None, target_hash="h1"):
    labels = {"app.kubernetes.io/instance": "m-canary" if track else "m"}
    if track:
        labels["modelops.io/track"] = track
    return {"metadata": {"labels": labels, "annotations": {"modelops.io/target-hash": target_hash}}}


def test_a_canary_pod_passes_the_gate_unchecked_only_for_the_running_canarys_admitted_target():
    from modelops_operator import gate

    running = {"attempt": {"key": "g2-v4"}, "lastGood": {"targetHash": "h0"},
               "canary": {"attempt": "g2-v4", "targetHash": "h1"}}
    assert gate.of_verified_target(pod("canary"), running)
    assert not gate.of_verified_target(pod("canary", "h2"), running)
    assert not gate.of_verified_target(pod("canary"), {**running, "attempt": {"key": "g3-v4"}})  # another attempt's
    ended = {**running["canary"], "ended": {"reason": "CanaryFailed", "message": "5xx"}}
    assert not gate.of_verified_target(pod("canary"), {**running, "canary": ended})
    assert not gate.of_verified_target(pod("canary", "h0"), running)  # the stable target is no canary's pass
    assert gate.of_verified_target(pod(None, "h0"), running) and not gate.of_verified_target(pod(), running)
