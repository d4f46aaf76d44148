"""The replica that acts, decided as kopf decides it, from peering objects as kopf writes them."""

import asyncio
import dataclasses
import datetime
import json
import uuid

import pytest
from kopf._core.engines.peering import Peer

from modelops_operator import alias
from modelops_operator.alias import ALIAS_VERSION_ANNOTATION
from modelops_operator.config import OperatorConfig
from modelops_operator.peering import Peering, is_active
from modelops_registry.client import client

from .conftest import KUBECONFIG, ROOT, kget, kubectl

NOW = datetime.datetime(2026, 12, 1, 13, 35, 48, tzinfo=datetime.UTC)
ME = "vm/08b70553"

# A KopfPeering's status recorded from a real run: `modelops-operator --peering modelops --priority 3`
# (kopf 1.45 wrote its own entry under the identity main() gave it), after a peer of priority 9 was
# patched in; kopf logged "Pausing operations in favour of [<Peer other/x ...>]" a moment later.
RECORDED = {
    "vm/08b70553": {"lastseen": "2026-12-01T13:35:40.005688+00:00", "lifetime": 60, "priority": 3},
    "other/x": {"lastseen": "2026-12-01T13:35:47+00:00", "lifetime": 600, "priority": 9},
}


def keepalive(priority, seconds_ago=0, lifetime=60):
    """One peer's entry, written by kopf's own code."""
    return Peer(identity="x", priority=priority, lifetime=lifetime,
                lastseen=(NOW - datetime.timedelta(seconds=seconds_ago)).isoformat()).as_dict()


def test_the_highest_priority_replica_is_active_and_the_others_stand_by():
    assert not is_active(RECORDED, ME, 3, NOW)
    assert is_active(RECORDED, "other/x", 9, NOW)
    lapsed = NOW + datetime.timedelta(seconds=600)
    assert is_active(RECORDED, ME, 3, lapsed), "the higher peer's keep-alive lapsed"


def test_alone_or_before_any_keep_alive_a_replica_is_active():
    assert is_active(None, ME, 0, NOW)
    assert is_active({}, ME, 0, NOW)
    assert is_active({ME: keepalive(0)}, ME, 0, NOW)


def test_a_higher_priority_peer_stops_being_obeyed_once_its_keep_alive_lapses():
    assert not is_active({"other": keepalive(5, seconds_ago=59)}, ME, 1, NOW)
    assert is_active({"other": keepalive(5, seconds_ago=60)}, ME, 1, NOW)
    assert is_active({"other": keepalive(5, seconds_ago=20, lifetime=10)}, ME, 1, NOW)


def test_equal_priorities_pause_everyone_as_kopf_does():
    assert not is_active({"other": keepalive(1), ME: keepalive(1)}, ME, 1, NOW)


def test_a_lower_priority_peer_does_not_matter_and_a_missing_lastseen_counts_as_now():
    assert is_active({"other": keepalive(0)}, ME, 1, NOW)
    assert not is_active({"other": {"priority": 2}}, ME, 1, NOW)


def test_an_unreadable_entry_is_ignored_rather_than_stopping_the_poller_for_good():
    assert is_active({"other": {"priority": "high", "lastseen": "yesterday"}, "junk": "x"}, ME, 0, NOW)


def test_the_peering_object_is_the_one_the_chart_creates():
    assert Peering("modelops", ME, 2, "team").kind == "KopfPeering"
    assert Peering("modelops", ME).kind == "ClusterKopfPeering"


@pytest.mark.cluster
def test_on_the_real_api_server_a_standby_replica_polls_only_once_the_active_one_is_gone(
        namespace, mlflow_server, monkeypatch):
    """A real KopfPeering object (the chart's CRD) and a real ModelDeployment; the poller runs in-process."""
    monkeypatch.setenv("KUBECONFIG", KUBECONFIG)
    kubectl("apply", "--server-side", "-f", str(ROOT / "charts/modelops/crds/kopf.dev_peerings.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    other = {"priority": 1, "lifetime": 3600, "lastseen": datetime.datetime.now(datetime.UTC).isoformat()}
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "modelops", "namespace": namespace},
        "status": {"modelops-operator-1/0000": other}}))
    model = f"peer-{uuid.uuid4().hex[:6]}"
    mc = client(mlflow_server)
    mc.create_registered_model(model)
    mc.create_model_version(model, source="s3://nowhere/model")
    mc.set_registered_model_alias(model, "champion", "1")
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "modelops.io/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": "follower", "namespace": namespace},
        "spec": {"model": {"name": model, "alias": "champion"}}}))
    config = dataclasses.replace(OperatorConfig.from_env({}), tracking_uri=mlflow_server, alias_poll_seconds=0.5)
    me = Peering("modelops", "modelops-operator-0/1111", 0, namespace)

    def annotation():
        return (kget("modeldeployment", "follower", namespace)["metadata"].get("annotations") or {}).get(
            ALIAS_VERSION_ANNOTATION)

    async def scenario():
        stopped = asyncio.Event()
        poller = asyncio.create_task(alias.poll_forever(config, namespace, stopped, me))
        await asyncio.sleep(4)
        standby = await asyncio.to_thread(annotation)
        kubectl("patch", "kopfpeering", "modelops", "-n", namespace, "--type", "merge",
                "-p", json.dumps({"status": {"modelops-operator-1/0000": None}}))
        for _ in range(40):
            if await asyncio.to_thread(annotation):
                break
            await asyncio.sleep(0.5)
        stopped.set()
        await poller
        return standby, await asyncio.to_thread(annotation)

    assert asyncio.run(scenario()) == (None, "1")
