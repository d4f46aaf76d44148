from modelops_operator.gate import awaiting_gate, of_verified_target, pod_version, serves
from modelops_operator.manifests import MODEL_VERSION_ANNOTATION, TARGET_HASH_ANNOTATION, VERIFIED_GATE
from modelops_operator.target import ServingTarget

VERIFIED = ServingTarget("3", "runs:/r/onnx/model.onnx", "f" * 64, "img:1", serving={"threads": 1})
RETHREADED = ServingTarget("3", "runs:/r/onnx/model.onnx", "f" * 64, "img:1", serving={"threads": 2})


def pod(*conditions, deleting=False, version="3", gated=True, target_hash=None):
    meta = {"name": "p", "namespace": "ns", "annotations": {MODEL_VERSION_ANNOTATION: version}}
    if target_hash:
        meta["annotations"][TARGET_HASH_ANNOTATION] = target_hash
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


def test_only_pods_of_the_verified_target_pass_unchecked_not_every_pod_of_its_version():
    status = {"modelVersion": "3", "lastGood": VERIFIED.to_status()}
    assert of_verified_target(pod(target_hash=VERIFIED.hash()), status)
    assert not of_verified_target(pod(target_hash=RETHREADED.hash()), status)  # same version, new threads


def test_nothing_passes_unchecked_before_a_first_target_was_verified():
    assert not of_verified_target(pod(target_hash=VERIFIED.hash()), {})
    assert not of_verified_target(pod(target_hash=VERIFIED.hash()), None)
    assert not of_verified_target(pod(), {"modelVersion": "3"})


def test_a_pod_from_a_template_older_than_target_hashes_is_matched_by_version():
    """Pods an older operator made carry no hash: matched by version, as that operator did."""
    status = {"lastGood": VERIFIED.to_status()}
    assert of_verified_target(pod(version="3"), status)
    assert not of_verified_target(pod(version="2"), status)


def test_a_rollout_admits_pods_of_its_own_target_only():
    """A rollback restoring version 3 must not admit the failed rollout's version-3 pods unchecked."""
    assert serves(pod(target_hash=VERIFIED.hash()), VERIFIED.hash(), "3")
    assert not serves(pod(target_hash=RETHREADED.hash()), VERIFIED.hash(), "3")
    assert serves(pod(version="3"), VERIFIED.hash(), "3") and not serves(pod(version="3"), None, None)
