"""kubectl-modelops without a cluster: argument parsing, the output formats, the promote and rollback
decisions and the patches they write."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from modelops_operator import plugin
from modelops_operator.plugin import Kubectl, Refused


def md(phase=None, target=None, **status) -> dict:
    obj = {"metadata": {"name": "cancer", "namespace": "ml", "resourceVersion": "42"},
           "spec": {"model": {"name": "e2e-cancer", "alias": "champion"}}, "status": dict(status)}
    if phase:
        obj["status"]["phase"] = phase
    if target:
        obj["status"]["targetModelVersion"] = target
    return obj


def test_the_kube_flags_are_accepted_before_and_after_the_command():
    args = plugin.parser().parse_args(["-n", "ml", "status", "cancer", "--context", "kind", "--kubeconfig", "/k"])
    assert (args.namespace, args.context, args.kubeconfig, args.name) == ("ml", "kind", "/k", "cancer")
    args = plugin.parser().parse_args(["history", "cancer", "--namespace", "ml"])
    assert (args.namespace, args.context, args.kubeconfig) == ("ml", None, None)


def test_kubectl_is_called_with_the_users_flags():
    assert Kubectl("ml", "kind", "/k").flags() == ["--kubeconfig", "/k", "--context", "kind", "--namespace", "ml"]
    assert Kubectl().flags() == []


def test_rollback_needs_to_and_promote_takes_an_optional_version(capsys):
    with pytest.raises(SystemExit):
        plugin.parser().parse_args(["rollback", "cancer"])
    assert "--to" in capsys.readouterr().err
    assert plugin.parser().parse_args(["promote", "cancer"]).version is None
    assert plugin.parser().parse_args(["promote", "cancer", "--version", "4"]).version == "4"


def test_status_shows_phase_versions_url_conditions_and_the_verdict():
    obj = md("Held", "4", modelVersion="3", url="http://cancer.ml",
             analysis={"verdict": "Inconclusive", "reason": "TooFewRequests", "message": "12 of 200 requests\nmore"},
             conditions=[{"type": "Ready", "status": "True", "reason": "Serving", "message": "v3 serves\ndetail"},
                         {"type": "Verified", "status": "Unknown"}])
    out = plugin.format_status(obj)
    assert "Phase:      Held" in out and "Serving:    3" in out and "Target:     4" in out
    assert "URL:        http://cancer.ml" in out and "e2e-cancer (alias champion)" in out
    assert "Verdict:  Inconclusive" in out and "Reason:   TooFewRequests" in out
    assert "Message:  12 of 200 requests" in out and "more" not in out
    assert re.search(r"Ready\s+True\s+Serving\s+v3 serves$", out, re.M) and "detail" not in out
    assert re.search(r"Verified\s+Unknown\s+-\s+-$", out, re.M)


def test_status_of_a_new_object_shows_dashes_not_errors():
    out = plugin.format_status({"metadata": {"name": "x"}, "spec": {"model": {"name": "m", "version": "1"}}})
    assert "Phase:      -" in out and "m (version 1)" in out and out.count("(none yet)") == 2


def test_history_is_a_table_with_dashes_for_missing_fields():
    obj = md(history=[
        {"version": "3", "verdict": "Pass", "reason": "Better", "phase": "Ready",
         "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:05:00Z"},
        {"version": "4", "verdict": "Inconclusive"},
        "not an entry",
        {},
    ])
    lines = plugin.format_history(obj).splitlines()
    assert lines[0].split() == ["VERSION", "VERDICT", "REASON", "PHASE", "STARTED", "FINISHED"]
    assert lines[1].split() == ["3", "Pass", "Better", "Ready", "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"]
    assert lines[2].split() == ["4", "Inconclusive", "-", "-", "-", "-"]
    assert lines[3].split() == lines[4].split() == ["-"] * 6


def test_history_without_entries_says_so():
    assert "No rollouts recorded yet" in plugin.format_history(md("Ready"))
    assert "No rollouts recorded yet" in plugin.format_history({"metadata": {"name": "x"}, "status": None})


@pytest.mark.parametrize("phase", ["Ready", "RollingOut", None])
def test_promote_is_refused_unless_held_and_names_the_phase(phase):
    with pytest.raises(Refused) as exc:
        plugin.promote_version(md(phase, "4"), None)
    assert "only a held version" in str(exc.value)
    assert (phase or "the operator has not reported yet") in str(exc.value)


def test_promote_defaults_to_the_held_target_and_refuses_another_version():
    assert plugin.promote_version(md("Held", "4"), None) == "4"
    assert plugin.promote_version(md("Held", "4"), "4") == "4"
    with pytest.raises(Refused, match="rolling out version 4, not 5"):
        plugin.promote_version(md("Held", "4"), "5")


def test_a_running_canary_can_be_promoted_or_aborted_at_any_step():
    running = md("Canary", "4")
    assert plugin.promote_version(running, None) == "4"
    assert plugin.abort_version(running, None) == "4"


@pytest.mark.parametrize("phase", ["Ready", "RollingOut", "RolledBack"])
def test_abort_is_refused_without_a_canary_and_names_the_phase(phase):
    with pytest.raises(Refused, match=f"in phase {phase}.*running canary"):
        plugin.abort_version(md(phase, "4"), None)


def test_abort_of_a_held_version_that_never_took_traffic_points_at_rollback():
    with pytest.raises(Refused, match="no canary.*rollback"):
        plugin.abort_version(md("Held", "4"), None)
    held_canary = md("Held", "4")
    held_canary["status"]["canary"] = {"version": "4", "step": 1, "weight": 25}
    assert plugin.abort_version(held_canary, None) == "4"


def test_status_shows_the_canarys_step_weight_and_live_verdict():
    obj = md("Canary", "4")
    obj["spec"]["rollout"] = {"canary": {"steps": [{"weight": 10}, {"weight": 25}, {"weight": 50}]}}
    obj["status"]["canary"] = {"version": "4", "step": 1, "weight": 25, "analysis": {
        "verdict": "Inconclusive", "reason": "TooFewSamples", "message": "12 of 100 canary requests\nmore"}}
    out = plugin.format_status(obj)
    assert "Canary:     version 4 at 25% (step 2 of 3)" in out
    assert "Live:     Inconclusive (TooFewSamples): 12 of 100 canary requests" in out


def test_the_request_records_action_version_user_time_and_an_id_where_the_operator_reads_it():
    assert plugin.REQUEST_ANNOTATION == "kubectl.modelops.io/request"  # verdicts.REQUEST_ANNOTATION
    req = plugin.request("promote", "4", "alice")
    assert {k: req[k] for k in ("action", "version", "by")} == {"action": "promote", "version": "4", "by": "alice"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", req["at"])
    assert re.fullmatch(r"[0-9a-f]{32}", req["id"])


def test_the_rollback_patch_pins_the_version_drops_the_alias_and_is_conditional():
    req = plugin.request("rollback", "2", "alice")
    patch = plugin.rollback_patch(md("Ready"), "2", req)
    assert patch["spec"] == {"model": {"version": "2", "alias": None}}
    assert json.loads(patch["metadata"]["annotations"][plugin.REQUEST_ANNOTATION]) == req
    assert patch["metadata"]["resourceVersion"] == "42"


class FakeKube(Kubectl):
    """Kubectl answering from a dict; records patches."""

    def __init__(self, obj, user="alice"):
        super().__init__("ml")
        object.__setattr__(self, "obj", obj)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "patches", [])

    def get(self, name):
        return self.obj

    def whoami(self):
        return self.user

    def merge_patch(self, name, patch):
        self.patches.append(patch)


def test_rollback_says_the_alias_is_no_longer_followed_and_how_to_follow_it_again(capsys):
    kube = FakeKube(md("Ready"))
    plugin.cmd_rollback(kube, plugin.parser().parse_args(["rollback", "cancer", "--to", "2"]))
    out = capsys.readouterr().out
    assert "no longer follows its alias champion" in out
    assert '''kubectl patch modeldeployment cancer -n ml --type merge -p '{"spec": {"model": {"alias": "champion", '''\
           '''"version": null}}}\'''' in out
    assert kube.patches[0]["spec"]["model"] == {"version": "2", "alias": None}


def test_rollback_refuses_a_version_that_is_not_a_number(capsys):
    kube = FakeKube(md("Ready"))
    with pytest.raises(Refused, match="not a model version"):
        plugin.cmd_rollback(kube, plugin.parser().parse_args(["rollback", "cancer", "--to", "v2"]))
    assert kube.patches == []


def test_an_unknown_user_is_recorded_and_said_on_stderr(capsys):
    kube = FakeKube(md("Held", "4"), user=None)
    plugin.cmd_promote(kube, plugin.parser().parse_args(["promote", "cancer"]))
    req = json.loads(kube.patches[0]["metadata"]["annotations"][plugin.REQUEST_ANNOTATION])
    assert req["by"] == "unknown" and req["version"] == "4" and req["action"] == "promote"
    assert "by=unknown" in capsys.readouterr().err


def test_main_exits_1_with_the_reason_on_stderr(monkeypatch, capsys):
    monkeypatch.setattr(Kubectl, "get", lambda self, name: md("Ready", "4"))
    assert plugin.main(["promote", "cancer"]) == 1
    assert "phase Ready" in capsys.readouterr().err


def test_a_missing_kubectl_is_named(capsys):
    kube = Kubectl(exe="/nonexistent/kubectl")
    with pytest.raises(plugin.KubectlFailed, match="not found on PATH"):
        kube.get("x")


def test_the_plugin_imports_nothing_but_the_standard_library():
    source = open(plugin.__file__).read()
    imported = set(re.findall(r"^(?:from|import) ([\w.]+)", source, re.M))
    assert imported <= {"__future__", "argparse", "json", "re", "subprocess", "sys", "uuid", "collections.abc",
                        "dataclasses", "datetime", "typing"}, imported


def test_the_released_single_file_runs_on_its_own(tmp_path):
    """What release.yml ships: plugin.py behind a shebang, run by the system python3 outside the venv."""
    exe = tmp_path / "kubectl-modelops"
    exe.write_text("#!/usr/bin/env python3\n" + open(plugin.__file__).read())
    exe.chmod(0o755)
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert res.returncode == 0 and "promote" in res.stdout, res.stderr


def test_retrain_is_refused_without_spec_retrain():
    with pytest.raises(Refused, match="no spec.retrain"):
        plugin.retrain_request(md("Ready"), "alice")


def test_retrain_asks_naming_who_asked_whatever_the_phase():
    obj = md("Held", "4", modelVersion="3")
    obj["spec"]["retrain"] = {"template": {"spec": {"containers": [{"name": "t", "image": "x"}]}}}
    req = plugin.retrain_request(obj, "alice")
    assert (req["action"], req["version"], req["by"]) == ("retrain", "3", "alice") and req["id"]
    patch = plugin.annotation_patch(obj, req)
    assert json.loads(patch["metadata"]["annotations"][plugin.REQUEST_ANNOTATION])["action"] == "retrain"


def test_status_shows_the_last_retrain():
    obj = md("Ready", retrain={"lastJob": {"name": "cancer-retrain-2", "result": "Succeeded"},
                               "nextAllowedAt": "2026-12-01T13:00:00Z",
                               "lastTrigger": {"source": "alert", "alert": "ModelopsFeatureDrift",
                                               "at": "2026-12-01T12:00:00Z", "outcome": "Started"}})
    text = plugin.format_status(obj)
    assert "Retrain:    last Job cancer-retrain-2 (Succeeded), next allowed 2026-12-01T13:00:00Z" in text
    assert "alert ModelopsFeatureDrift at 2026-12-01T12:00:00Z: Started" in text
