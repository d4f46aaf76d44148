"""Retraining's pure part: which triggers are new, the start-or-refuse decision, the Job manifest and
what a finished Job says."""

from __future__ import annotations

import datetime
import json

import pytest

from modelops_operator import retrain
from modelops_operator.manifests import pod_security_context
from modelops_operator.spec import ModelDeploymentSpec, RetrainSpec

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
TEMPLATE = {"spec": {"containers": [{"name": "train", "image": "modelops/training:dev",
                                     "command": ["modelops-train"], "args": ["--promote-if-better", "champion"]}]}}
OWNER = {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
         "metadata": {"name": "cancer", "namespace": "ml", "uid": "u-1"}}
TRIGGER = retrain.Trigger("alert", "t1", "alertmanager", "2026-12-01T12:00:00Z", "ModelopsFeatureDrift")


def spec(**retrain_fields) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "e2e-cancer", "alias": "champion"},
        "retrain": {"template": TEMPLATE, **retrain_fields}})


def started(ago_seconds: float) -> dict:
    return {"retrain": {"lastJob": {"name": "cancer-retrain-1",
                                    "started": retrain.stamp(NOW - datetime.timedelta(seconds=ago_seconds))}}}


# ---- which triggers are new -----------------------------------------------------------------------

def annotated(request=None, alert=None) -> dict:
    annotations = {}
    if request:
        annotations["kubectl.modelops.io/request"] = json.dumps(request)
    if alert:
        annotations[retrain.ALERT_ANNOTATION] = json.dumps(alert)
    return {"annotations": annotations}


def test_a_retrain_request_and_an_alert_are_each_pending_until_their_id_is_recorded():
    meta = annotated({"action": "retrain", "version": "3", "by": "alice", "at": "T", "id": "r1"},
                     {"alert": "ModelopsFeatureDrift", "by": "alertmanager", "at": "T", "id": "a1"})
    assert [(t.source, t.id, t.by, t.alert) for t in retrain.pending(meta, {})] == [
        ("request", "r1", "alice", None), ("alert", "a1", "alertmanager", "ModelopsFeatureDrift")]
    assert retrain.pending(meta, {"lastRequest": "r1", "retrain": {"lastAlertId": "a1"}}) == []


def test_other_plugin_requests_and_unreadable_annotations_are_no_triggers():
    meta = annotated({"action": "promote", "version": "3", "id": "p1"})
    meta["annotations"][retrain.ALERT_ANNOTATION] = "{not json"
    assert retrain.pending(meta, {}) == []


@pytest.mark.parametrize("at", ["T", "yesterday", "2026-13-45T99:00:00Z", 12, ["x"], None, "2" * 300])
def test_a_trigger_time_that_is_no_date_time_becomes_now(at):
    meta = annotated({"action": "retrain", "by": "alice", "at": at, "id": "r1"},
                     {"alert": "A", "at": at, "id": "a1"})
    assert [t.at for t in retrain.pending(meta, {}, NOW)] == ["2026-12-01T12:00:00Z"] * 2


def test_a_valid_trigger_time_is_kept_in_utc():
    meta = annotated(alert={"alert": "A", "at": "2026-12-01T13:30:00+01:00", "id": "a1"})
    assert retrain.pending(meta, {}, NOW)[0].at == "2026-12-01T12:30:00Z"


def test_who_and_which_alert_are_capped_for_status():
    meta = annotated({"action": "retrain", "by": "b" * 5000, "at": "T", "id": "r1"},
                     {"alert": "a" * 5000, "by": "x" * 5000, "id": "a1"})
    request, alert = retrain.pending(meta, {}, NOW)
    assert max(len(request.by), len(alert.by), len(alert.alert or "")) == retrain.MAX_FIELD
    assert alert.alert.endswith("...")


def test_a_long_id_is_compared_as_it_is_recorded():
    meta = annotated(alert={"alert": "A", "id": "i" * 1000})
    [trigger] = retrain.pending(meta, {}, NOW)
    assert retrain.pending(meta, {"retrain": {"lastAlertId": trigger.id}}, NOW) == []


def test_the_webhooks_annotation_has_a_fresh_id_per_delivery():
    one, two = (json.loads(retrain.alert_annotation("ModelopsFeatureDrift", NOW)) for _ in range(2))
    assert one["id"] != two["id"]
    assert (one["alert"], one["by"], one["at"]) == ("ModelopsFeatureDrift", "alertmanager", "2026-12-01T12:00:00Z")


# ---- what status records --------------------------------------------------------------------------

def test_a_trigger_record_patches_leaves_of_status_retrain_only():
    ops = retrain.record_ops("u-1", {"lastAlertId": "a1", "jobsStarted": 2, "nextAllowedAt": None,
                                     "lastJob": {"name": "cancer-retrain-2", "started": "2026-12-01T12:00:00Z"}})
    assert ops[0] == {"op": "test", "path": "/metadata/uid", "value": "u-1"}
    assert [(o["op"], o["path"]) for o in ops[1:]] == [
        ("add", "/status/retrain/lastAlertId"), ("add", "/status/retrain/jobsStarted"),
        ("add", "/status/retrain/lastJob")]


def test_a_request_record_also_names_the_request():
    ops = retrain.record_ops("u-1", {"lastTrigger": {"id": "r1"}}, last_request="r1")
    assert ops[-1] == {"op": "add", "path": "/status/lastRequest", "value": "r1"}


def test_a_result_is_written_only_while_last_job_names_the_job():
    ops = retrain.result_ops("u-1", "cancer-retrain-1", "Failed", "m" * 999, None)
    assert ops[:2] == [{"op": "test", "path": "/metadata/uid", "value": "u-1"},
                       {"op": "test", "path": "/status/retrain/lastJob/name", "value": "cancer-retrain-1"}]
    assert [o["path"] for o in ops[2:]] == ["/status/retrain/lastJob/result", "/status/retrain/lastJob/message"]
    assert len(ops[3]["value"]) == retrain.MAX_FIELD


# ---- start or refuse ------------------------------------------------------------------------------

def test_no_spec_retrain_refuses():
    decision = retrain.decide(None, {}, [], NOW)
    assert (decision.start, decision.reason) == (False, "NotConfigured")
    assert "no spec.retrain" in decision.message


def test_the_first_trigger_starts():
    assert retrain.decide(RetrainSpec(template=TEMPLATE), {}, [], NOW).start


def test_a_trigger_within_the_cooldown_is_refused_saying_until_when():
    decision = retrain.decide(RetrainSpec(template=TEMPLATE, cooldown_seconds=3600), started(600), [], NOW)
    assert (decision.start, decision.reason) == (False, "Cooldown")
    assert "cooldown until 2026-12-01T12:50:00Z" in decision.message


def test_the_cooldown_follows_the_spec_as_it_is_now():
    assert retrain.decide(RetrainSpec(template=TEMPLATE, cooldown_seconds=300), started(600), [], NOW).start
    assert retrain.decide(RetrainSpec(template=TEMPLATE, cooldown_seconds=0), started(0), [], NOW).start


def test_max_concurrent_refuses_naming_the_running_jobs():
    decision = retrain.decide(RetrainSpec(template=TEMPLATE, cooldown_seconds=0, max_concurrent=1), started(5),
                              ["cancer-retrain-1"], NOW)
    assert (decision.start, decision.reason) == (False, "MaxConcurrent")
    assert "maxConcurrent 1 reached (running: cancer-retrain-1)" in decision.message
    assert retrain.decide(RetrainSpec(template=TEMPLATE, cooldown_seconds=0, max_concurrent=2), started(5),
                          ["cancer-retrain-1"], NOW).start


def test_next_allowed_is_the_start_plus_the_cooldown():
    assert retrain.next_allowed(RetrainSpec(template=TEMPLATE, cooldown_seconds=90), NOW) == "2026-12-01T12:01:30Z"


# ---- the Job --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, n", [("cancer", 1), ("a" * 63, 12), ("ab-" + "c" * 60, 7)])
def test_job_names_are_dns_labels_of_at_most_63_characters(name, n):
    job = retrain.job_name(name, n)
    assert len(job) <= 63 and job.endswith(f"-retrain-{n}") and "--" not in job


def test_the_number_is_read_back_from_the_name():
    assert retrain.number_of(retrain.job_name("cancer", 12)) == 12 and retrain.number_of("export-x") == 0


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value") for e in container["env"]}


def test_the_job_is_owned_labelled_and_carries_the_trigger_and_model():
    job = retrain.job("cancer", "ml", 3, spec(), TRIGGER, "http://mlflow:5000", OWNER)
    meta = job["metadata"]
    assert (meta["name"], meta["namespace"]) == ("cancer-retrain-3", "ml")
    assert meta["labels"][retrain.RETRAIN_LABEL] == "cancer"
    assert job["spec"]["template"]["metadata"]["labels"][retrain.RETRAIN_LABEL] == "cancer"
    assert meta["ownerReferences"] == [{"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                                        "name": "cancer", "uid": "u-1", "controller": True,
                                        "blockOwnerDeletion": False}]
    assert retrain.trigger_id_of(job) == "t1"
    [c] = job["spec"]["template"]["spec"]["containers"]
    env = env_of(c)
    assert json.loads(env["MODELOPS_RETRAIN_TRIGGER"]) == TRIGGER.to_status()
    assert (env["MODELOPS_MODEL_NAME"], env["MODELOPS_ALIAS"]) == ("e2e-cancer", "champion")
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert c["args"] == ["--promote-if-better", "champion"]  # the user's command untouched


def test_the_job_follows_the_export_jobs_security_conventions():
    job = retrain.job("cancer", "ml", 1, spec(), TRIGGER, None, OWNER)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == pod_security_context()
    [c] = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": retrain.TMP_VOLUME, "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": retrain.TMP_VOLUME, "emptyDir": {"sizeLimit": "4Gi"}} in pod["volumes"]
    assert "MLFLOW_TRACKING_URI" not in env_of(c)  # the operator knows no tracking URI here
    assert (job["spec"]["backoffLimit"], "activeDeadlineSeconds" in job["spec"]) == (0, False)


def test_the_templates_own_tracking_uri_and_settings_win_ours_do_not_yield():
    template = {"metadata": {"labels": {"team": "ml"}}, "spec": {
        "serviceAccountName": "trainer", "automountServiceAccountToken": True,
        "containers": [{"name": "train", "image": "x", "env": [
            {"name": "MLFLOW_TRACKING_URI", "value": "http://theirs"}, {"name": "MODELOPS_MODEL_NAME", "value": "no"}],
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}]}],
        "volumes": [{"name": "scratch", "emptyDir": {}}]}}
    md = ModelDeploymentSpec.model_validate({"model": {"name": "m", "version": "1", "credentialsSecret": "creds"},
                                             "retrain": {"template": template, "backoffLimit": 2,
                                                         "activeDeadlineSeconds": 600}})
    job = retrain.job("m", "ml", 1, md, TRIGGER, "http://ours", OWNER)
    pod = job["spec"]["template"]["spec"]
    [c] = pod["containers"]
    env = env_of(c)
    assert env["MLFLOW_TRACKING_URI"] == "http://theirs" and env["MODELOPS_MODEL_NAME"] == "m"
    assert "MODELOPS_ALIAS" not in env  # a pinned version follows no alias
    assert [e["name"] for e in c["env"]].count("MODELOPS_MODEL_NAME") == 1
    assert pod["automountServiceAccountToken"] is True and pod["serviceAccountName"] == "trainer"
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}]  # their /tmp, none of ours
    assert c["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (2, 600)
    assert template["spec"]["containers"][0]["env"][0] == {"name": "MLFLOW_TRACKING_URI", "value": "http://theirs"}


# ---- what a Job says ------------------------------------------------------------------------------

def job_with(*conditions) -> dict:
    return {"metadata": {"name": "cancer-retrain-1", "ownerReferences": [{"uid": "u-1"}]},
            "status": {"conditions": list(conditions)}}


def test_a_running_job_has_no_result():
    assert retrain.result(job_with()) is None
    assert retrain.result(job_with({"type": "Suspended", "status": "True"})) is None


def test_a_complete_job_succeeded_and_a_failed_one_says_why():
    done = job_with({"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-01T12:03:00Z"})
    assert retrain.result(done) == ("Succeeded", "retrain Job cancer-retrain-1 succeeded", "2026-12-01T12:03:00Z")
    failed = job_with({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                       "message": "Job has reached the specified backoff limit"})
    state, message, _ = retrain.result(failed)
    assert state == "Failed" and "BackoffLimitExceeded: Job has reached the specified backoff limit" in message


def test_ownership_is_by_uid():
    assert retrain.owned_by(job_with(), "u-1") and not retrain.owned_by(job_with(), "u-2")
