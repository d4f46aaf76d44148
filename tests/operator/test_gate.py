from modelops_operator.gate import awaiting_gate, pod_version
from modelops_operator.manifests import MODEL_VERSION_ANNOTATION, VERIFIED_GATE


def pod(*conditions, deleting=False, version="3", gated=True):
    meta = {"name": "p", "namespace": "ns", "annotations": {MODEL_VERSION_ANNOTATION: version}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-23T00:00:00Z"
    spec = {"readinessGates": [{"conditionType": VERIFIED_GATE}]} if gated else {}
    return {"metadata": meta, "spec": spec,
            "status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}


def test_a_pod_waits_at_the_gate_once_its_containers_are_ready_and_until_admitted():
    assert not awaiting_gate(pod(("ContainersReady", "False")))
    assert awaiting_gate(pod(("ContainersReady", "True")))
    assert awaiting_gate(pod(("ContainersReady", "True"), (VERIFIED_GATE, "False")))
    assert not awaiting_gate(pod(("ContainersReady", "True"), (VERIFIED_GATE, "True")))


def test_a_pod_without_the_gate_never_waits_at_it():
    """An export Job's pod is the operator's too, but it declares no gate and takes no traffic."""
    assert not awaiting_gate(pod(("ContainersReady", "True"), gated=False))


def test_a_terminating_pod_is_never_admitted():
    assert not awaiting_gate(pod(("ContainersReady", "True"), deleting=True))


def test_the_pod_version_comes_from_its_template_annotation():
    assert pod_version(pod(version="7")) == "7"
