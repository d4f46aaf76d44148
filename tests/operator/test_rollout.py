from modelops_operator.rollout import pod_evidence, rollout_state


def dep(generation=2, observed=2, replicas=2, updated=2, total=2, available=2, conditions=()):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total,
                   "availableReplicas": available, "conditions": list(conditions)},
    }


def test_done_when_every_replica_is_updated_and_available():
    assert rollout_state(dep()).done


def test_waits_until_the_controller_observed_the_new_generation():
    state = rollout_state(dep(generation=3, observed=2))
    assert not state.done and not state.failed


def test_waits_for_new_replicas_old_replicas_and_availability():
    assert "new replicas" in rollout_state(dep(updated=1)).message
    assert "old replicas" in rollout_state(dep(total=3)).message
    assert "available" in rollout_state(dep(available=1)).message
    assert not any(rollout_state(d).done for d in (dep(updated=1), dep(total=3), dep(available=1)))


def test_progress_deadline_exceeded_is_a_failure():
    cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "slow"}
    state = rollout_state(dep(available=0, conditions=[cond]))
    assert state.failed and "slow" in state.message


def test_pod_evidence_names_the_failing_pods_of_that_version_only():
    pods = [
        {"metadata": {"name": "new-1", "annotations": {"modelops.io/model-version": "4"}},
         "status": {"phase": "Running", "containerStatuses": [
             {"ready": False, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
              "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}},
        {"metadata": {"name": "old-1", "annotations": {"modelops.io/model-version": "3"}},
         "status": {"phase": "Running", "containerStatuses": [{"ready": True}]}},
    ]
    evidence = pod_evidence(pods, "4")
    assert "new-1" in evidence and "CrashLoopBackOff" in evidence and "last exit 1" in evidence
    assert "old-1" not in evidence
    assert pod_evidence(pods, "9") == "no pods of this version were created"
