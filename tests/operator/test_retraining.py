"""Retraining's I/O against a fake API (kube replaced): which alerts are recorded, and a finished Job's
result recorded once. The real API server's side is tests/operator/test_retrain_live.py."""

from __future__ import annotations

import asyncio
import copy
import datetime
import json

import pytest
from kubernetes.client.exceptions import ApiException

from modelops_operator import retrain, retraining
from modelops_operator.webhooks import FiringAlert

WITH_RETRAIN = {"spec": {"model": {"name": "m", "alias": "champion"},
                         "retrain": {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}}}}}


class FakeKube:
    """The API server's side of retraining: objects by (namespace, name); status written by JSON patch
    (its test ops checked: a failed one is the API server's 422) or by merge patch."""

    def __init__(self, objects: dict[tuple[str, str], dict]):
        self.objects = objects
        self.annotated: list[tuple[str, str, dict]] = []
        self.status_patches: list[tuple[str, list]] = []

    async def get(self, api_version, kind, name, namespace):
        return copy.deepcopy(self.objects.get((namespace, name)))

    async def patch_annotations(self, name, namespace, annotations):
        self.annotated.append((namespace, name, annotations))

    async def patch_status(self, name, namespace, status):
        obj = self.objects[(namespace, name)].setdefault("status", {})
        for key, value in status.items():
            obj[key] = {**value, **(obj.get(key) or {})} if isinstance(value, dict) else value

    async def patch_status_of(self, uid, name, namespace, ops):
        obj = copy.deepcopy(self.objects[(namespace, name)])
        for op in ops:
            *parents, leaf = op["path"].strip("/").split("/")
            node = obj
            for key in parents:
                if not isinstance(node, dict) or key not in node:
                    raise ApiException(status=422, reason=f"{op['path']}: no such path")
                node = node[key]
            if op["op"] == "test":
                if node.get(leaf) != op["value"]:
                    raise ApiException(status=422, reason=f"test {op['path']} failed")
            else:
                node[leaf] = copy.deepcopy(op["value"])
        self.status_patches.append((name, ops))
        self.objects[(namespace, name)] = obj


def drift(alertname="ModelopsFeatureDrift", version=None) -> FiringAlert:
    return FiringAlert(alertname, version)


@pytest.fixture
def fake(monkeypatch):
    kube = FakeKube({
        ("ml", "cancer"): {**WITH_RETRAIN, "metadata": {"name": "cancer", "namespace": "ml", "uid": "u-1"}},
        ("ml", "plain"): {"spec": {"model": {"name": "m", "version": "1"}}, "metadata": {"name": "plain"}},
        ("other", "cancer"): {**WITH_RETRAIN, "metadata": {"name": "cancer", "namespace": "other"}},
    })
    for name in ("get", "patch_annotations", "patch_status", "patch_status_of"):
        monkeypatch.setattr(retraining.kube, name, getattr(kube, name))
    monkeypatch.setattr(retraining.kopf, "event", lambda *a, **kw: kube.__dict__.setdefault("events", []).append(kw))
    return kube


def test_only_deployments_with_spec_retrain_in_the_watched_namespace_are_triggered(fake):
    targets = {("ml", "cancer"): [drift()], ("ml", "plain"): [drift()],
               ("ml", "gone"): [drift("ModelopsPredictionDrift")], ("other", "cancer"): [drift()]}
    triggered, ignored = asyncio.run(retraining.record_alerts(targets, "ml"))
    assert (triggered, ignored) == (["ml/cancer"], 3)
    [(ns, name, annotations)] = fake.annotated
    assert (ns, name) == ("ml", "cancer")
    assert json.loads(annotations[retrain.ALERT_ANNOTATION])["alert"] == "ModelopsFeatureDrift"


def test_cluster_wide_every_namespace_counts(fake):
    targets = {("ml", "cancer"): [drift("A")], ("other", "cancer"): [drift("A")]}
    assert asyncio.run(retraining.record_alerts(targets, None)) == (["ml/cancer", "other/cancer"], 0)


@pytest.mark.parametrize(("versions", "recorded"), [(["3"], "A-3"), ([None], "A-None"), (["2", "3"], "A-3"),
                                                    (["2"], None), (["2", "1"], None)])
def test_only_alerts_about_the_served_version_or_no_version_trigger(fake, versions, recorded):
    fake.objects[("ml", "cancer")]["status"] = {"modelVersion": "3"}
    alerts = [drift(f"A-{v}", v) for v in versions]
    triggered, ignored = asyncio.run(retraining.record_alerts({("ml", "cancer"): alerts}, "ml"))
    if recorded is None:  # a replaced version's drift alert still firing after the rollout
        assert (triggered, ignored, fake.annotated) == ([], 1, [])
    else:
        assert (triggered, ignored) == (["ml/cancer"], 0)
        assert json.loads(fake.annotated[0][2][retrain.ALERT_ANNOTATION])["alert"] == recorded


def test_an_alert_in_the_cooldown_is_accepted_but_not_recorded(fake, caplog):
    later = retrain.stamp(retrain.now_utc() + datetime.timedelta(hours=1))
    fake.objects[("ml", "cancer")]["status"] = {"retrain": {"nextAllowedAt": later}}
    caplog.set_level("INFO", logger=retraining.log.name)
    assert asyncio.run(retraining.record_alerts({("ml", "cancer"): [drift()]}, "ml")) == ([], 1)
    assert fake.annotated == [] and f"cooldown until {later}" in caplog.text


def test_after_the_cooldown_an_alert_is_recorded_again(fake):
    earlier = retrain.stamp(retrain.now_utc() - datetime.timedelta(seconds=1))
    fake.objects[("ml", "cancer")]["status"] = {"retrain": {"nextAllowedAt": earlier}}
    assert asyncio.run(retraining.record_alerts({("ml", "cancer"): [drift()]}, "ml")) == (["ml/cancer"], 0)


def finished_job(name="cancer-retrain-1", uid="u-1") -> dict:
    return {"metadata": {"name": name, "namespace": "ml", "labels": {retrain.RETRAIN_LABEL: "cancer"},
                         "ownerReferences": [{"uid": uid}]},
            "status": {"conditions": [{"type": "Complete", "status": "True",
                                       "lastTransitionTime": "2026-12-01T12:03:00Z"}]}}


def test_a_finished_job_is_recorded_once_with_one_event(fake):
    fake.objects[("ml", "cancer")]["status"] = {"retrain": {"lastJob": {"name": "cancer-retrain-1",
                                                                         "started": "2026-12-01T12:00:00Z"}}}
    asyncio.run(retraining.job_changed(finished_job()))
    asyncio.run(retraining.job_changed(finished_job()))  # a second event of the same Job
    last = fake.objects[("ml", "cancer")]["status"]["retrain"]["lastJob"]
    assert (last["result"], last["finished"]) == ("Succeeded", "2026-12-01T12:03:00Z")
    assert [e["reason"] for e in fake.events] == ["RetrainSucceeded"]


@pytest.mark.parametrize("job", [finished_job(name="cancer-retrain-0"), finished_job(uid="someone-else")],
                         ids=["not-the-last-job", "not-owned"])
def test_a_job_that_is_not_the_last_one_or_not_ours_is_left_alone(fake, job):
    fake.objects[("ml", "cancer")]["status"] = {"retrain": {"lastJob": {"name": "cancer-retrain-1"}}}
    asyncio.run(retraining.job_changed(job))
    assert fake.status_patches == [] and not getattr(fake, "events", None)


class Cluster(FakeKube):
    """FakeKube with Jobs: create refuses a taken name (None, as kube.create) or the whole Job (Invalid)."""

    def __init__(self, objects, jobs=(), invalid=False):
        super().__init__(objects)
        self.jobs = {j["metadata"]["name"]: j for j in jobs}
        self.invalid = invalid

    async def get(self, api_version, kind, name, namespace):
        return self.jobs.get(name) if kind == "Job" else await super().get(api_version, kind, name, namespace)

    async def list_objects(self, api_version, kind, namespace, selector):
        return list(self.jobs.values())

    async def create(self, obj):
        if self.invalid:
            raise retraining.kube.Invalid("spec.template.spec.containers[0].image: Required value")
        if obj["metadata"]["name"] in self.jobs:
            return None
        self.jobs[obj["metadata"]["name"]] = obj
        return obj


def triggered_md(status=None) -> dict:
    return {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment", **WITH_RETRAIN, "status": status or {},
            "metadata": {"name": "cancer", "namespace": "ml", "uid": "u-1", "generation": 1, "annotations": {
                retrain.ALERT_ANNOTATION: json.dumps({"alert": "ModelopsFeatureDrift", "at": "T", "id": "a1"})}}}


def act(monkeypatch, cluster: Cluster, md: dict) -> Cluster:
    cluster.objects[("ml", "cancer")] = md
    for name in ("get", "list_objects", "create", "patch_status", "patch_status_of"):
        monkeypatch.setattr(retraining.kube, name, getattr(cluster, name))
    monkeypatch.setattr(retraining.kopf, "event", lambda *a, **kw: cluster.__dict__.setdefault("events", []).append(kw))
    config = retraining.OperatorConfig.from_env({"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    asyncio.run(retraining.act_on_triggers(md, md["spec"], md["status"], retraining.log, config))
    return cluster


def test_a_new_alert_starts_job_one_and_records_it(monkeypatch):
    cluster = act(monkeypatch, Cluster({}), triggered_md())
    assert list(cluster.jobs) == ["cancer-retrain-1"]
    record = cluster.objects[("ml", "cancer")]["status"]["retrain"]
    assert (record["jobsStarted"], record["lastAlertId"], record["lastTrigger"]["outcome"]) == (1, "a1", "Started")
    assert [e["reason"] for e in cluster.events] == ["RetrainStarted"]


def test_a_job_an_earlier_operator_started_for_the_same_trigger_is_taken_as_started(monkeypatch):
    earlier = retrain.job("cancer", "ml", 1, retraining.ModelDeploymentSpec.model_validate(WITH_RETRAIN["spec"]),
                          retrain.Trigger("alert", "a1", "alertmanager", "T", "ModelopsFeatureDrift"), None,
                          {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                           "metadata": {"name": "cancer", "uid": "u-1"}})
    cluster = act(monkeypatch, Cluster({}, jobs=[earlier]), triggered_md())
    assert list(cluster.jobs) == ["cancer-retrain-1"]
    assert cluster.objects[("ml", "cancer")]["status"]["retrain"]["lastJob"]["name"] == "cancer-retrain-1"


def test_a_name_taken_by_another_trigger_moves_on_to_the_next_number(monkeypatch):
    other = {"metadata": {"name": "cancer-retrain-1", "annotations": {retrain.TRIGGER_ANNOTATION: '{"id": "x"}'},
                          "ownerReferences": [{"uid": "u-0"}]}}
    cluster = act(monkeypatch, Cluster({}, jobs=[other]), triggered_md())
    assert sorted(cluster.jobs) == ["cancer-retrain-1", "cancer-retrain-2"]


def test_a_template_the_api_server_rejects_is_retrain_failed_and_acted_on(monkeypatch):
    cluster = act(monkeypatch, Cluster({}, invalid=True), triggered_md())
    record = cluster.objects[("ml", "cancer")]["status"]["retrain"]
    assert (record["lastAlertId"], record["lastTrigger"]["outcome"]) == ("a1", "Failed")
    assert [e["reason"] for e in cluster.events] == ["RetrainFailed"]
    assert "fix spec.retrain.template" in cluster.events[0]["message"]


def test_an_alert_in_the_cooldown_is_skipped_without_a_job(monkeypatch):
    status = {"retrain": {"lastJob": {"name": "cancer-retrain-1", "started": retrain.stamp(retrain.now_utc())},
                          "jobsStarted": 1}}
    cluster = act(monkeypatch, Cluster({}), triggered_md(status))
    assert cluster.jobs == {}
    assert [e["reason"] for e in cluster.events] == ["RetrainSkipped"]
    assert "cooldown until" in cluster.events[0]["message"]


# ---- two writers of status.retrain: the trigger's (ModelDeployment queue) and the Job follower's ----

def test_a_skipped_trigger_from_a_stale_body_keeps_the_result_the_follower_wrote(monkeypatch):
    started = retrain.stamp(retrain.now_utc())
    stale = {"retrain": {"lastJob": {"name": "cancer-retrain-1", "started": started}, "jobsStarted": 1}}
    md = triggered_md(copy.deepcopy(stale))
    cluster = Cluster({("ml", "cancer"): {**copy.deepcopy(md), "status": copy.deepcopy(stale)}})
    for name in ("get", "list_objects", "create", "patch_status", "patch_status_of"):
        monkeypatch.setattr(retraining.kube, name, getattr(cluster, name))
    monkeypatch.setattr(retraining.kopf, "event", lambda *a, **kw: cluster.__dict__.setdefault("events", []).append(kw))
    asyncio.run(retraining.job_changed(finished_job()))  # the result, written after the body was read
    config = retraining.OperatorConfig.from_env({})
    asyncio.run(retraining.act_on_triggers(md, md["spec"], md["status"], retraining.log, config))  # in the cooldown
    record = cluster.objects[("ml", "cancer")]["status"]["retrain"]
    assert record["lastJob"]["result"] == "Succeeded"
    assert (record["lastAlertId"], record["lastTrigger"]["outcome"]) == ("a1", "Skipped")
    assert [e["reason"] for e in cluster.events] == ["RetrainSucceeded", "RetrainSkipped"]


def test_a_result_read_before_a_newer_job_started_is_not_written_over_it(fake, monkeypatch):
    old = {"retrain": {"lastJob": {"name": "cancer-retrain-1"}, "jobsStarted": 1}}
    new = {"retrain": {"lastJob": {"name": "cancer-retrain-2", "started": "2026-12-01T13:00:00Z"},
                       "jobsStarted": 2, "lastAlertId": "a2", "nextAllowedAt": "2026-12-01T14:00:00Z"}}
    fake.objects[("ml", "cancer")]["status"] = copy.deepcopy(new)
    stale = {**copy.deepcopy(fake.objects[("ml", "cancer")]), "status": old}
    reads = iter([stale])
    real_get = fake.get

    async def get(api_version, kind, name, namespace):  # the follower's first read predates Job 2
        return next(reads, None) or await real_get(api_version, kind, name, namespace)

    monkeypatch.setattr(retraining.kube, "get", get)
    asyncio.run(retraining.job_changed(finished_job("cancer-retrain-1")))
    assert fake.objects[("ml", "cancer")]["status"] == new
    assert not getattr(fake, "events", None)


def test_a_result_is_written_as_lastjobs_leaves_only(fake):
    status = {"retrain": {"lastJob": {"name": "cancer-retrain-1", "started": "2026-12-01T12:00:00Z"},
                          "lastAlertId": "a1", "jobsStarted": 1}}
    fake.objects[("ml", "cancer")]["status"] = copy.deepcopy(status)
    asyncio.run(retraining.job_changed(finished_job()))
    [(_, ops)] = fake.status_patches
    assert {o["path"] for o in ops if o["op"] != "test"} == {
        "/status/retrain/lastJob/result", "/status/retrain/lastJob/message", "/status/retrain/lastJob/finished"}


def test_a_first_record_creates_status_retrain_and_keeps_the_rest_of_status(monkeypatch):
    md = triggered_md({"phase": "Ready"})
    cluster = act(monkeypatch, Cluster({}), md)
    status = cluster.objects[("ml", "cancer")]["status"]
    assert status["phase"] == "Ready" and status["retrain"]["lastJob"]["name"] == "cancer-retrain-1"


def test_a_trigger_time_that_is_no_date_time_is_recorded_as_now(monkeypatch):
    cluster = act(monkeypatch, Cluster({}), triggered_md())  # its annotation's "at" is "T"
    at = cluster.objects[("ml", "cancer")]["status"]["retrain"]["lastTrigger"]["at"]
    assert retrain.parse_time(at) is not None and at != "T"


# ---- Job names taken -------------------------------------------------------------------------------

class Lagging(Cluster):
    """A Cluster whose list does not show the Jobs yet (another replica just created them)."""

    async def list_objects(self, api_version, kind, namespace, selector):
        return []


def test_a_name_taken_by_this_triggers_own_job_is_the_start(monkeypatch):
    spec = retraining.ModelDeploymentSpec.model_validate(WITH_RETRAIN["spec"])
    mine = retrain.job("cancer", "ml", 1, spec, retrain.Trigger("alert", "a1", "alertmanager", "T", "A"), None,
                       {"apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
                        "metadata": {"name": "cancer", "uid": "u-1"}})
    cluster = act(monkeypatch, Lagging({}, jobs=[mine]), triggered_md())
    assert list(cluster.jobs) == ["cancer-retrain-1"]
    record = cluster.objects[("ml", "cancer")]["status"]["retrain"]
    assert (record["lastJob"]["name"], record["lastTrigger"]["outcome"]) == ("cancer-retrain-1", "Started")


def test_after_the_last_try_the_numbers_tried_are_counted_as_started(monkeypatch):
    others = [{"metadata": {"name": f"cancer-retrain-{n}", "ownerReferences": [{"uid": "u-0"}],
                            "annotations": {retrain.TRIGGER_ANNOTATION: json.dumps({"id": f"x{n}"})}}}
              for n in range(1, retraining.MAX_NAME_TRIES + 1)]
    with pytest.raises(retraining.kopf.TemporaryError):
        act(monkeypatch, Lagging({}, jobs=others), triggered_md())
    cluster_md = retraining.kube.get.__self__.objects[("ml", "cancer")]
    assert cluster_md["status"]["retrain"]["jobsStarted"] == retraining.MAX_NAME_TRIES
    assert "lastAlertId" not in cluster_md["status"]["retrain"]  # not acted on: the retry tries again


def test_pods_get_the_specs_tracking_uri_else_the_proxys_without_credentials():
    config = retraining.OperatorConfig.from_env({"MLFLOW_TRACKING_URI": "http://op:pw@mlflow:5000",
                                                 "MODELOPS_POD_TRACKING_URI": "http://u:p@proxy:5000"})
    assert config.pod_tracking_uri(None) == "http://proxy:5000"
    assert config.pod_tracking_uri("https://k:s@other/mlflow") == "https://other/mlflow"
