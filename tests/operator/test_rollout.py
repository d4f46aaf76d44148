import json
from pathlib import Path

import pytest

from modelops_operator.rollout import (
    POD_MILESTONES,
    Fingerprint,
    Progress,
    advance,
    deadline_passed,
    fingerprint,
    high_water,
    pod_evidence,
    pod_milestone,
    progressed,
    rollout_state,
    start_clock,
)


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


# Pods as the API server reports them at each milestone (trimmed to the fields the operator reads).
def pod(name="md-7c9-a", version="4", scheduled=True, started=False, containers_ready=False, gate=None,
        waiting=None, restarts=0, terminating=False):
    conditions = [{"type": "PodScheduled", "status": "True" if scheduled else "False"}]
    statuses = []
    if scheduled:
        conditions += [{"type": "Initialized", "status": "True"},
                       {"type": "ContainersReady", "status": "True" if containers_ready else "False"},
                       {"type": "Ready", "status": "True" if gate == "True" and containers_ready else "False"}]
        state = {"running": {"startedAt": "2026-12-01T13:00:00Z"}} if started else {"waiting": {"reason": waiting}}
        statuses = [{"name": "server", "ready": containers_ready, "started": started, "restartCount": restarts,
                     "state": state}]
    if gate is not None:
        conditions.append({"type": "modelops.io/verified", "status": gate})
    meta = {"name": name, "annotations": {"modelops.io/model-version": version}}
    if terminating:
        meta["deletionTimestamp"] = "2026-12-01T13:00:00Z"
    return {"metadata": meta, "spec": {"readinessGates": [{"conditionType": "modelops.io/verified"}]},
            "status": {"phase": "Running" if started else "Pending", "conditions": conditions,
                       "containerStatuses": statuses}}


def test_a_pods_milestones_run_from_created_to_admitted():
    assert [POD_MILESTONES[pod_milestone(p)] for p in (
        pod(scheduled=False), pod(waiting="ContainerCreating"), pod(started=True),
        pod(started=True, containers_ready=True), pod(started=True, containers_ready=True, gate="True"),
    )] == ["created", "scheduled", "started", "containers ready", "admitted"]


def test_the_fingerprint_holds_the_deployments_counts_and_the_new_versions_live_pods_only():
    pods = [pod("new-a", started=True), pod("old-a", version="3", started=True, containers_ready=True, gate="True"),
            pod("new-b", terminating=True)]
    fp = fingerprint(dep(updated=1, total=3, available=2), pods, "4")
    assert fp == Fingerprint((2, 1, 0, 2, -2), (("new-a", 2),))
    assert hash(fp) == hash(fingerprint(dep(updated=1, total=3, available=2), pods, "4"))


T0, DEADLINE = 1000.0, 20


def seen(*pods_, **counts):
    return fingerprint(dep(**counts), list(pods_), "4")


@pytest.mark.parametrize("before, now, moves", [
    (seen(pod(waiting="ContainerCreating")), seen(pod(waiting="ContainerCreating")), False),
    (seen(pod(waiting="ContainerCreating")), seen(pod(started=True)), True),
    (seen(pod(started=True)), seen(pod(started=True, containers_ready=True)), True),
    (seen(pod("a", started=True)), seen(pod("a", started=True), pod("b", scheduled=False)), True),
    (seen(available=1), seen(available=2), True),
    (seen(total=3, updated=2), seen(total=2, updated=2), True),  # an old replica went away
    # a crash loop: started, crashed (CrashLoopBackOff), started again with restartCount up: not progress
    (seen(pod(started=True, restarts=1)), seen(pod(waiting="CrashLoopBackOff", restarts=1)), False),
    (high_water(seen(pod(started=True, restarts=1)), seen(pod(waiting="CrashLoopBackOff", restarts=1))),
     seen(pod(started=True, restarts=2)), False),
    # a pod that was ready, crashed and is ready again reached nothing new
    (seen(available=2), seen(available=1), False),
    (high_water(seen(available=2), seen(available=1)), seen(available=2), False),
], ids=["no-change", "started", "containers-ready", "new-pod", "more-available", "fewer-old", "crashed",
        "restarted", "availability-fell", "availability-back"])
def test_progress_is_reaching_something_not_reached_before(before, now, moves):
    assert progressed(before, now) is moves
    assert (advance(Progress(before, T0), now, T0 + 5, waiting_at_gate=False).observed_at == T0 + 5) is moves


def test_no_progress_for_the_deadline_fails_and_progress_resets_it():
    stuck = seen(pod(waiting="ErrImageNeverPull"))
    last = Progress(stuck, T0)
    for t in range(1, DEADLINE):
        last = advance(last, stuck, T0 + t, waiting_at_gate=False)
        assert not deadline_passed(last, T0 + t, DEADLINE)
    assert deadline_passed(advance(last, stuck, T0 + DEADLINE, False), T0 + DEADLINE, DEADLINE)
    moved = advance(last, seen(pod(started=True)), T0 + DEADLINE - 1, False)
    assert not deadline_passed(moved, T0 + 2 * DEADLINE - 2, DEADLINE)
    assert deadline_passed(moved, T0 + 2 * DEADLINE - 1, DEADLINE)


def test_time_a_pod_waits_at_the_gate_for_the_operators_checks_is_not_counted():
    waiting = seen(pod(started=True, containers_ready=True, gate="False"))
    last = Progress(waiting, T0)
    for t in range(1, 3 * DEADLINE):
        last = advance(last, waiting, T0 + t, waiting_at_gate=True)
    assert not deadline_passed(last, T0 + 3 * DEADLINE, DEADLINE)


def test_a_restart_starts_the_clock_afresh_but_remembers_what_was_reached():
    before_restart = Progress(seen(pod(started=True, restarts=3)), T0)
    restored = Progress.from_status(before_restart.to_status())
    assert restored == before_restart
    # the operator was down for ten deadlines: not counted against the version
    resumed = start_clock(restored, seen(pod(waiting="CrashLoopBackOff", restarts=5)), T0 + 10 * DEADLINE)
    assert not deadline_passed(resumed, T0 + 10 * DEADLINE, DEADLINE)
    # the crash-looping pod had started before the restart: starting again is not progress
    again = advance(resumed, seen(pod(started=True, restarts=6)), T0 + 11 * DEADLINE, False)
    assert deadline_passed(again, T0 + 11 * DEADLINE, DEADLINE)
    assert Progress.from_status(None) is None and Progress.from_status({"observedAt": "x"}) is None
    assert start_clock(None, seen(), T0) == Progress(seen(), T0)


RECORDED = json.loads((Path(__file__).parent / "recorded" / "rollout.json").read_text())


def recorded_pod(milestone: str) -> dict:
    return RECORDED["pods"][milestone]


def test_recorded_pods_are_at_the_milestones_they_were_recorded_at():
    for milestone in ("scheduled", "started", "containers_ready", "admitted"):
        assert POD_MILESTONES[pod_milestone(recorded_pod(milestone))] == milestone.replace("_", " ")


def test_a_recorded_rollout_progresses_pod_by_pod_and_only_its_own_version_counts():
    old = recorded_pod("old_version_admitted")
    first = fingerprint(RECORDED["deployments"]["first_new_pod"], [old, recorded_pod("started")], "2")
    assert first.pods == ((recorded_pod("started")["metadata"]["name"], 2),)
    at_gate = fingerprint(RECORDED["deployments"]["first_new_pod"], [old, recorded_pod("containers_ready")], "2")
    assert progressed(first, at_gate)
    # the next poll: the first new pod admitted, the second created and scheduled, one more updated replica
    second = fingerprint(RECORDED["deployments"]["second_new_pod"],
                         [old, recorded_pod("admitted"), recorded_pod("scheduled")], "2")
    assert progressed(at_gate, second) and not progressed(second, second)
    assert not progressed(second, fingerprint(RECORDED["deployments"]["second_new_pod"],
                                              [recorded_pod("admitted"), recorded_pod("scheduled")], "2"))


def test_a_recorded_crash_loop_makes_no_progress_after_its_first_start():
    """Running, crashed, CrashLoopBackOff, running again (restartCount 1, 2, 3): only the first time is
    progress, so a crash-looping version fails one deadline after it. (This container has no readiness
    probe, so it is "containers ready" while running; the operator's admit answers such a pod at the
    gate on the poll that sees it, hence no gate wait here.)"""
    polls = [fingerprint(None, [p], "2") for p in RECORDED["crashloop"]["pods"]]
    assert [POD_MILESTONES[p.pods[0][1]] for p in polls] == [
        "containers ready", "scheduled", "scheduled", "containers ready", "scheduled", "containers ready"]
    assert [p["status"]["containerStatuses"][0]["restartCount"] for p in RECORDED["crashloop"]["pods"]] == [
        0, 1, 1, 2, 2, 3]
    last = start_clock(None, polls[0], T0)  # the first start
    for t, poll in enumerate(polls[1:], 1):
        last = advance(last, poll, T0 + t * 10, waiting_at_gate=False)
    assert last.observed_at == T0
    assert deadline_passed(last, T0 + 50, deadline_seconds=50)
