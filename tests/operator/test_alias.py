"""Following aliases: which ModelDeployments share one MLflow lookup (pure), and a poll cycle against a
real MLflow server in which bad objects and missing models stay contained to themselves."""

import asyncio
import dataclasses
import json
import uuid

import kopf
import pytest

from modelops_operator import alias
from modelops_operator.alias import ALIAS_VERSION_ANNOTATION, AliasKey, Follower, alias_groups, refresh_all
from modelops_operator.config import OperatorConfig
from modelops_operator.handlers import PREFIX
from modelops_registry.client import client

from .conftest import KUBECONFIG, kget, kubectl

OPERATOR_MLFLOW = "http://mlflow:5000"
CONFIG = dataclasses.replace(OperatorConfig.from_env({}), tracking_uri=OPERATOR_MLFLOW,
                             allowed_tracking_uris=("http://other:5000",))


def md(name, model=None, namespace="ns", version=None, **spec):
    annotations = {ALIAS_VERSION_ANNOTATION: version} if version else {}
    return {"metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"model": model if model is not None else {"name": "cancer", "alias": "champion"}, **spec}}


def test_a_moved_alias_changes_what_kopf_diffs_so_the_update_handler_runs():
    """kopf drops annotations under its storage prefix from the diffed essence; the alias annotation
    must not be one of them, or a moved alias would never reach the reconcile."""
    storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    body = kopf.Body({
        "metadata": {"name": "m", "annotations": {f"{PREFIX}/kopf-managed": "yes", ALIAS_VERSION_ANNOTATION: "2"}},
        "spec": {"model": {"name": "m", "alias": "champion"}},
    })
    essence = storage.build(body=body)
    assert essence["metadata"]["annotations"] == {ALIAS_VERSION_ANNOTATION: "2"}


def test_deployments_following_the_same_alias_on_the_same_mlflow_share_one_lookup():
    groups, problems = alias_groups([
        md("a"), md("b", namespace="other", version="3"),
        md("c", {"name": "cancer", "alias": "champion", "trackingUri": OPERATOR_MLFLOW}),
        md("d", {"name": "cancer", "alias": "challenger"}),
        md("e", {"name": "cancer", "alias": "champion", "trackingUri": "http://other:5000"}),
        md("f", {"name": "digits", "alias": "champion"}),
    ], CONFIG)
    assert problems == []
    assert groups == {
        AliasKey(OPERATOR_MLFLOW, "cancer", "champion"): [Follower("ns", "a", None), Follower("other", "b", "3"),
                                                          Follower("ns", "c", None)],
        AliasKey(OPERATOR_MLFLOW, "cancer", "challenger"): [Follower("ns", "d", None)],
        AliasKey("http://other:5000", "cancer", "champion"): [Follower("ns", "e", None)],
        AliasKey(OPERATOR_MLFLOW, "digits", "champion"): [Follower("ns", "f", None)],
    }


def test_pinned_versions_and_refused_tracking_uris_are_left_alone_and_bad_objects_reported():
    groups, problems = alias_groups([
        md("pinned", {"name": "cancer", "version": "2"}),
        md("foreign", {"name": "cancer", "alias": "champion", "trackingUri": "http://evil:5000"}),
        md("nameless", {"alias": "champion"}),
        {"spec": {"model": {"name": "cancer", "alias": "champion"}}},
        md("ok"),
    ], CONFIG)
    assert list(groups) == [AliasKey(OPERATOR_MLFLOW, "cancer", "champion")]
    assert len(problems) == 2
    assert "ns/nameless" in problems[0] and "spec.model.name" in problems[0]
    assert "metadata" in problems[1]


def test_a_webhook_names_the_model_and_alias_whose_followers_it_refreshes():
    mds = [md("a"), md("b", {"name": "cancer", "alias": "challenger"}), md("c", {"name": "digits", "alias": "x"})]
    assert list(alias_groups(mds, CONFIG, model_name="cancer")[0]) == [
        AliasKey(OPERATOR_MLFLOW, "cancer", "champion"), AliasKey(OPERATOR_MLFLOW, "cancer", "challenger")]
    assert list(alias_groups(mds, CONFIG, model_name="cancer", alias="challenger")[0]) == [
        AliasKey(OPERATOR_MLFLOW, "cancer", "challenger")]


@pytest.fixture
def registered(mlflow_server, tmp_path) -> str:
    """A fresh registered model with two versions, alias champion on v2."""
    mc = client(mlflow_server)
    exp = mc.get_experiment_by_name("operator-alias")
    run_id = mc.create_run(exp.experiment_id if exp else mc.create_experiment("operator-alias")).info.run_id
    name = f"alias-{uuid.uuid4().hex[:8]}"
    mc.create_registered_model(name)
    for _ in range(2):
        mc.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    mc.set_registered_model_alias(name, "champion", "2")
    return name


class Recorder:
    """Stands in for the Kubernetes patch (this test has no cluster); `gone` objects fail as a deleted
    ModelDeployment would."""

    def __init__(self, gone=()):
        self.patched, self.gone = [], set(gone)

    async def __call__(self, name, namespace, annotations):
        if name in self.gone:
            raise RuntimeError(f"(404) modeldeployments {name!r} not found")
        self.patched.append((namespace, name, annotations))


def test_one_cycle_against_real_mlflow_contains_each_failure_and_calls_mlflow_once_per_alias(
        mlflow_server, registered, monkeypatch, caplog):
    lookups = []
    real = alias.resolve_version

    async def counted(model, tracking_uri):
        lookups.append((model.name, model.alias))
        return await real(model, tracking_uri)

    monkeypatch.setattr(alias, "resolve_version", counted)
    config = dataclasses.replace(CONFIG, tracking_uri=mlflow_server)
    mds = [
        md("no-such-model", {"name": f"missing-{uuid.uuid4().hex[:6]}", "alias": "champion"}),
        md("no-such-alias", {"name": registered, "alias": "nope"}),
        md("nameless", {"alias": "champion"}),
        {"kind": "ModelDeployment"},
        md("gone", {"name": registered, "alias": "champion"}),
        md("moved", {"name": registered, "alias": "champion"}, version="1"),
        md("current", {"name": registered, "alias": "champion"}, version="2"),
        md("new", {"name": registered, "alias": "champion"}),
    ]
    annotate = Recorder(gone={"gone"})
    assert asyncio.run(refresh_all(mds, config, annotate=annotate)) == 2
    assert annotate.patched == [("ns", "moved", {ALIAS_VERSION_ANNOTATION: "2"}),
                                ("ns", "new", {ALIAS_VERSION_ANNOTATION: "2"})]
    assert sorted(lookups) == sorted([(mds[0]["spec"]["model"]["name"], "champion"), (registered, "nope"),
                                      (registered, "champion")])
    logged = caplog.text
    assert "ns/nameless" in logged and "ns/gone" in logged and "nope" in logged


def test_lookups_for_different_aliases_run_concurrently_within_the_bound(monkeypatch):
    running, peak = 0, 0

    async def slow(model, tracking_uri):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        return "1"

    monkeypatch.setattr(alias, "resolve_version", slow)
    mds = [md(f"m{i}", {"name": f"model-{i}", "alias": "champion"}) for i in range(3 * alias.POLL_CONCURRENCY)]
    assert asyncio.run(refresh_all(mds, CONFIG, annotate=Recorder())) == len(mds)
    assert peak == alias.POLL_CONCURRENCY > 1




@pytest.mark.cluster
def test_a_poll_cycle_on_the_real_api_server_moves_the_followers_a_missing_model_beside_them(
        namespace, mlflow_server, registered, monkeypatch):
    """Real ModelDeployments (no operator running: nothing else touches them) and a real MLflow."""
    monkeypatch.setenv("KUBECONFIG", KUBECONFIG)
    objects = [md("missing", {"name": f"missing-{uuid.uuid4().hex[:6]}", "alias": "champion"}, namespace),
               md("follower", {"name": registered, "alias": "champion"}, namespace)]
    for obj in objects:
        kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "modelops.io/v1alpha1",
                                                      "kind": "ModelDeployment", **obj}))
    config = dataclasses.replace(CONFIG, tracking_uri=mlflow_server)
    assert asyncio.run(alias.refresh_matching(config, namespace)) == 1
    annotations = kget("modeldeployment", "follower", namespace)["metadata"]["annotations"]
    assert annotations[ALIAS_VERSION_ANNOTATION] == "2"
    assert ALIAS_VERSION_ANNOTATION not in (kget("modeldeployment", "missing", namespace)["metadata"]
                                            .get("annotations") or {})
    assert asyncio.run(alias.refresh_matching(config, namespace)) == 0, "an unmoved alias patches nothing"
