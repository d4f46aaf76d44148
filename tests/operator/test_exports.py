"""The export Job's manifest and what its state means (pure functions in exports.py), and the
tracking URI allowlist (config.py)."""

from __future__ import annotations

import json

import pytest

from modelops_operator import exports
from modelops_operator.config import OperatorConfig
from modelops_operator.spec import ModelDeploymentSpec

OWNER = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "cancer", "namespace": "team-a", "uid": "uid-1"}}
SETTINGS = exports.JobSettings(image="modelops/training:dev", deadline_seconds=600, ttl_seconds=120)


def spec(**model) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": {"name": "breast-cancer", "alias": "champion", **model}})


def build(md=None, uri="http://mlflow.modelops-system.svc:5000") -> dict:
    md = md or spec()
    digest = exports.settings_hash("breast-cancer", "3", md, SETTINGS.image)
    return exports.job(exports.job_name("breast-cancer", "3", digest), "team-a", md, "3", digest, uri, SETTINGS,
                       OWNER)


def test_the_job_pod_runs_without_a_token_non_root_read_only_and_with_every_capability_dropped():
    pod = build()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"] == {
        "type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["restartPolicy"] == "Never"


def test_the_job_exports_the_resolved_version_with_the_specs_settings_deadline_and_ttl():
    md = ModelDeploymentSpec.model_validate({"model": {"name": "breast-cancer", "alias": "champion"},
                                             "export": {"opset": 17, "quantize": "dynamic-int8", "tolerance": 0.01,
                                                        "resources": {"limits": {"memory": "64Mi"}}}})
    job = build(md)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:1] == ["models:/breast-cancer/3"]  # the version, never the alias again
    assert container["args"][container["args"].index("--opset") + 1] == "17"
    assert container["args"][container["args"].index("--quantize") + 1] == "dynamic-int8"
    assert container["args"][container["args"].index("--result-file") + 1] == exports.RESULT_PATH
    assert container["resources"] == {"limits": {"memory": "64Mi"}}
    assert job["spec"]["activeDeadlineSeconds"] == 600 and job["spec"]["ttlSecondsAfterFinished"] == 120
    assert job["metadata"]["ownerReferences"] == [{**exports.owner_reference(OWNER)}]
    assert job["metadata"]["ownerReferences"][0]["controller"] is False


def test_default_export_resources_are_bounded():
    resources = build()["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["memory"] and resources["requests"]["cpu"]


def test_credentials_come_from_the_namespaces_secret_and_never_ride_in_the_uri():
    job = build(spec(credentialsSecret="mlflow-creds"), uri="http://alice:s3cret@mlflow.example:5000")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-creds"}}]
    assert "s3cret" not in json.dumps(job)
    assert {"name": "MLFLOW_TRACKING_URI", "value": "http://mlflow.example:5000"} in container["env"]


def test_only_an_unreachable_registry_is_retried_by_the_job():
    rules = build()["spec"]["podFailurePolicy"]["rules"]
    count = next(r for r in rules if r["action"] == "Count")
    fail = next(r for r in rules if r["action"] == "FailJob")
    assert count["onExitCodes"]["values"] == [4]
    assert fail["onExitCodes"] == {"containerName": "export", "operator": "NotIn", "values": [0, 4]}


def test_one_job_name_per_model_version_and_settings():
    a, b = spec(), spec()
    other = ModelDeploymentSpec.model_validate({"model": {"name": "breast-cancer", "version": "3"},
                                                "export": {"quantize": "dynamic-int8"}})
    same = exports.settings_hash("breast-cancer", "3", a, "img:1")
    assert same == exports.settings_hash("breast-cancer", "3", b, "img:1")
    assert same != exports.settings_hash("breast-cancer", "3", other, "img:1")
    assert same != exports.settings_hash("breast-cancer", "4", a, "img:1")
    assert same != exports.settings_hash("breast-cancer", "3", a, "img:2")
    more_memory = ModelDeploymentSpec.model_validate({"model": {"name": "breast-cancer", "alias": "champion"},
                                                      "export": {"resources": {"limits": {"memory": "4Gi"}}}})
    assert same != exports.settings_hash("breast-cancer", "3", more_memory, "img:1")
    name = exports.job_name("A_Very.Long_Model.Name-" * 5, "123456789012", same)
    assert len(name) <= 63 and name == name.lower()
    assert all(c.isalnum() or c == "-" for c in name) and name[0].isalpha() and name[-1].isalnum()


def test_joining_adds_an_owner_once():
    other = {**OWNER, "metadata": {**OWNER["metadata"], "name": "cancer-2", "uid": "uid-2"}}
    owners = exports.joined_owners([exports.owner_reference(OWNER)], other)
    assert [o["uid"] for o in owners] == ["uid-1", "uid-2"]
    assert exports.joined_owners(owners, other) is None


def pod(created="2026-01-01T00:00:00Z", phase="Running", terminated=None, waiting=None) -> dict:
    state = {"terminated": terminated} if terminated else {"waiting": waiting} if waiting else {"running": {}}
    return {"metadata": {"name": f"p-{created}", "namespace": "team-a", "creationTimestamp": created},
            "status": {"phase": phase, "containerStatuses": [{"name": "export", "state": state}]}}


def job_with(*conditions) -> dict:
    return {"spec": {"activeDeadlineSeconds": 600},
            "status": {"conditions": [{"type": t, "status": "True", "reason": r} for t, r in conditions]}}


RESULT = {"ok": True, "run_id": "r1", "artifact_path": "onnx/opset18-none-abc", "version": "3"}


def test_a_complete_job_hands_over_the_exporters_result():
    done = pod(phase="Succeeded", terminated={"exitCode": 0, "message": json.dumps(RESULT)})
    outcome = exports.outcome(job_with(("Complete", "")), [done])
    assert outcome.state == "Succeeded" and outcome.result == RESULT


def test_an_oom_kill_is_named_with_the_fix():
    oom = pod(phase="Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    outcome = exports.outcome(job_with(("Failed", "PodFailurePolicy")), [oom])
    assert (outcome.state, outcome.reason, outcome.retryable) == ("Failed", "OOMKilled", False)
    assert "limits.memory" in outcome.message


def test_a_deadline_names_the_deadline():
    outcome = exports.outcome(job_with(("Failed", "DeadlineExceeded")), [pod()])
    assert outcome.reason == "DeadlineExceeded" and "600 s" in outcome.message


def test_the_exporters_own_error_is_the_message():
    parity = pod(phase="Failed", terminated={"exitCode": 7, "message": json.dumps(
        {"ok": False, "exit_code": 7, "retryable": False, "error": "parity gate failed: max abs 3.2"})})
    outcome = exports.outcome(job_with(("Failed", "PodFailurePolicy")), [parity])
    assert (outcome.reason, outcome.message) == ("ParityFailed", "parity gate failed: max abs 3.2")


def test_a_log_tail_stands_in_when_the_exporter_wrote_no_result():
    crashed = pod(phase="Failed", terminated={"exitCode": 1, "reason": "Error", "message": "Traceback...\nBoom"})
    outcome = exports.outcome(job_with(("Failed", "PodFailurePolicy")), [crashed])
    assert outcome.state == "Failed" and "exit code 1" in outcome.message and "Boom" in outcome.message


def test_an_unreachable_registry_retries_while_the_job_runs_and_is_retryable_when_it_gave_up():
    down = pod("2026-01-01T00:00:00Z", "Failed", terminated={"exitCode": 4, "message": json.dumps(
        {"ok": False, "exit_code": 4, "retryable": True, "error": "MLflow unreachable"})})
    again = pod("2026-01-01T00:01:00Z")
    retrying = exports.outcome(job_with(), [down, again])
    assert retrying.state == "Retrying" and "MLflow unreachable" in retrying.message
    gave_up = exports.outcome(job_with(("Failed", "BackoffLimitExceeded")), [down])
    assert gave_up.state == "Failed" and gave_up.retryable


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImageNeverPull", "CreateContainerConfigError"])
def test_a_pod_that_cannot_start_fails_at_once_with_its_reason(reason):
    stuck = pod(phase="Pending", waiting={"reason": reason, "message": 'secret "creds" not found'})
    outcome = exports.outcome(job_with(), [stuck])
    assert (outcome.state, outcome.reason) == ("Failed", reason) and "creds" in outcome.message


def test_a_running_job_is_running():
    assert exports.outcome(job_with(), [pod()]).state == "Running"
    assert exports.outcome(job_with(), []).state == "Running"


def test_the_network_policy_allows_dns_and_mlflow_only():
    peer = {"ipBlock": {"cidr": "10.1.2.3/32"}}
    policy = exports.network_policy("team-a", peer, 5000)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "modelops-export"}}
    assert policy["spec"]["ingress"] == [] and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    egress = policy["spec"]["egress"]
    assert {p["port"] for p in egress[0]["ports"]} == {53} and "to" not in egress[0]
    assert egress[1] == {"to": [peer], "ports": [{"protocol": "TCP", "port": 5000}]}


@pytest.mark.parametrize(("uri", "expected"), [
    ("http://modelops-mlflow.modelops-system.svc:5000", ("modelops-mlflow.modelops-system.svc", 5000,
                                                          "modelops-mlflow", "modelops-system")),
    ("http://mlflow.ml.svc.cluster.local", ("mlflow.ml.svc.cluster.local", 80, "mlflow", "ml")),
    ("https://mlflow.example.com/prefix", ("mlflow.example.com", 443, None, None)),
    ("file:///tmp/mlruns", (None, None, None, None)),
    (None, (None, None, None, None)),
])
def test_mlflow_address(uri, expected):
    assert exports.mlflow_address(uri) == expected


def config(**env) -> OperatorConfig:
    return OperatorConfig.from_env({"MLFLOW_TRACKING_URI": "http://modelops-mlflow.modelops-system.svc:5000", **env})


@pytest.mark.parametrize(("uri", "allowed"), [
    (None, True),
    ("http://modelops-mlflow.modelops-system.svc:5000", True),
    ("http://modelops-mlflow.modelops-system.svc:5000/", True),
    ("HTTP://Modelops-MLflow.modelops-system.svc:5000", True),
    ("http://user:pw@modelops-mlflow.modelops-system.svc:5000", True),
    ("http://modelops-mlflow.modelops-system.svc:5001", False),
    ("http://attacker.example:5000", False),
    ("https://modelops-mlflow.modelops-system.svc:5000", False),
    ("http://modelops-mlflow.modelops-system.svc:notaport", False),
])
def test_only_the_operators_own_tracking_uri_is_allowed_by_default(uri, allowed):
    assert config().allows(uri) is allowed


def test_the_allowlist_setting_adds_servers():
    cfg = config(MODELOPS_ALLOWED_TRACKING_URIS="http://mlflow.team-b.svc:5000, https://mlflow.example.com")
    assert cfg.allows("http://mlflow.team-b.svc:5000") and cfg.allows("https://mlflow.example.com:443/")
    assert not cfg.allows("http://mlflow.team-c.svc:5000")


def test_export_settings_come_from_the_environment():
    cfg = config(MODELOPS_EXPORT_IMAGE="modelops/training:1.2", MODELOPS_MAX_CONCURRENT_EXPORTS="3",
                 MODELOPS_EXPORT_DEADLINE_SECONDS="60", MODELOPS_EXPORT_TTL_SECONDS="30",
                 MODELOPS_EXPORT_NETWORK_POLICY="false")
    assert cfg.export == exports.JobSettings("modelops/training:1.2", 60, 30)
    assert cfg.max_concurrent_exports == 3 and cfg.export_network_policy is False
    assert config().export_network_policy is True


def test_a_job_that_failed_before_this_attempt_is_not_inherited():
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True",
                                         "lastTransitionTime": "2026-01-01T00:00:10Z"}]}}
    t = 1767225610.0  # 2026-01-01T00:00:10Z
    assert exports.failed_before(failed, t + 60)
    assert not exports.failed_before(failed, t - 60)  # failed during this attempt: its evidence
    assert not exports.failed_before({"status": {}}, t + 60)
    assert not exports.failed_before(failed, None)


def test_the_ingress_domain_comes_from_the_environment_without_surrounding_dots():
    assert config(MODELOPS_INGRESS_DOMAIN=" modelops.localhost. ").ingress_domain == "modelops.localhost"
    assert config().ingress_domain is None and config(MODELOPS_INGRESS_DOMAIN="").ingress_domain is None
