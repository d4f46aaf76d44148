"""kubectl-modelops: a kubectl plugin to read a ModelDeployment's verdicts and act on them.

    kubectl modelops status NAME              phase, versions, URL, conditions, the latest analysis verdict
    kubectl modelops history NAME             every rollout in status.history, one row each
    kubectl modelops promote NAME [--version V]   accept the held (Inconclusive) or canary version
    kubectl modelops abort NAME               stop a running or held canary (weight 0, scaled to zero)
    kubectl modelops rollback NAME --to V     pin spec.model.version to V (the alias is no longer followed)
    kubectl modelops retrain NAME             start the spec.retrain Job now (refused in its cooldown)

Standard library only, and it shells out to `kubectl` rather than using a client library, so that
it honours the user's kubeconfig, context, credentials plugins and proxy exactly as kubectl does,
and so the release can ship it as one file (``#!/usr/bin/env python3`` prepended). It imports
nothing else from the operator. promote, abort, rollback and retrain do not act themselves: they write the
``kubectl.modelops.io/request`` annotation (who asked, when, an id) and the operator acts and emits the
Event naming who asked.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

RESOURCE = "modeldeployments.modelops.io"
# Not under modelops.io/: that is the operator's kopf prefix, whose annotations kopf leaves out of the
# diff, so a request there would never reach the operator's update handler.
REQUEST_ANNOTATION = "kubectl.modelops.io/request"
HELD_PHASE = "Held"
CANARY_PHASE = "Canary"
VERSION_PATTERN = re.compile(r"^[1-9][0-9]*$")  # the CRD's spec.model.version pattern
HISTORY_FIELDS = ("version", "verdict", "reason", "phase", "startedAt", "finishedAt")
MISSING = "-"


class Refused(Exception):
    """The command will not act; the message says why and what to do instead (exit code 1)."""


class KubectlFailed(Exception):
    """kubectl itself failed; its own message is surfaced as it is (exit code 1)."""


# ---- talking to kubectl ------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    """kubectl with the user's -n/--context/--kubeconfig passed on to every call."""

    namespace: str | None = None
    context: str | None = None
    kubeconfig: str | None = None
    exe: str = "kubectl"

    def flags(self) -> list[str]:
        out = []
        for flag, value in (("--kubeconfig", self.kubeconfig), ("--context", self.context),
                            ("--namespace", self.namespace)):
            if value:
                out += [flag, value]
        return out

    def run(self, *args: str) -> str:
        try:
            res = subprocess.run([self.exe, *self.flags(), *args], capture_output=True, text=True)
        except FileNotFoundError as exc:
            raise KubectlFailed(f"{self.exe} was not found on PATH: install kubectl, or put it on PATH") from exc
        if res.returncode != 0:
            raise KubectlFailed(res.stderr.strip() or f"kubectl {' '.join(args)} exited with {res.returncode}")
        return res.stdout

    def get(self, name: str) -> dict[str, Any]:
        return json.loads(self.run("get", RESOURCE, name, "-o", "json"))

    def merge_patch(self, name: str, patch: dict[str, Any]) -> None:
        self.run("patch", RESOURCE, name, "--type", "merge", "-p", json.dumps(patch))

    def whoami(self) -> str | None:
        """The user the API server sees (SelfSubjectReview, Kubernetes 1.28+), or None."""
        try:
            review = json.loads(self.run("auth", "whoami", "-o", "json"))
        except (KubectlFailed, ValueError):
            return None
        return (review.get("status") or {}).get("userInfo", {}).get("username") or None


# ---- pure formatting ---------------------------------------------------------------------------


def text(value: Any) -> str:
    """A field for display: "-" for missing or empty, else its text."""
    return MISSING if value is None or value == "" else str(value)


def first_line(message: Any) -> str:
    lines = str(message or "").strip().splitlines()
    return lines[0] if lines else MISSING


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded like kubectl's own tables (three spaces apart, the last unpadded)."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [str(row[i]).ljust(widths[i]) for i in range(len(header))]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def format_status(obj: dict[str, Any]) -> str:
    meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
    model = _dict(spec.get("model"))
    follows = f"alias {model['alias']}" if model.get("alias") else f"version {text(model.get('version'))}"
    analysis = _dict(status.get("analysis"))
    lines = [
        f"Name:       {text(meta.get('name'))}",
        f"Namespace:  {text(meta.get('namespace'))}",
        f"Model:      {text(model.get('name'))} ({follows})",
        f"Phase:      {text(status.get('phase'))}",
        f"Serving:    {text(status.get('modelVersion'))}",
        f"Target:     {text(status.get('targetModelVersion'))}",
        f"URL:        {text(status.get('url'))}",
    ]
    canary = _dict(status.get("canary"))
    if canary and status.get("phase") in (CANARY_PHASE, HELD_PHASE) and canary.get("version") == status.get(
            "targetModelVersion"):
        live = _dict(canary.get("analysis"))
        steps = _dict(_dict(spec.get("rollout")).get("canary")).get("steps") or []
        lines.append(f"Canary:     version {text(canary.get('version'))} at {text(canary.get('weight'))}% "
                     f"(step {int(canary.get('step') or 0) + 1} of {len(steps) or '?'})")
        if live:
            lines.append(f"  Live:     {text(live.get('verdict'))} ({text(live.get('reason'))}): "
                         f"{first_line(live.get('message'))}")
    retrain = _dict(status.get("retrain"))
    if retrain:
        job, trig = _dict(retrain.get("lastJob")), _dict(retrain.get("lastTrigger"))
        lines.append(f"Retrain:    last Job {text(job.get('name'))} ({text(job.get('result') or 'running')}), "
                     f"next allowed {text(retrain.get('nextAllowedAt'))}")
        if trig:
            lines.append(f"  Trigger:  {text(trig.get('source'))} {text(trig.get('alert') or trig.get('by'))} at "
                         f"{text(trig.get('at'))}: {text(trig.get('outcome'))}")
    lines.append("Analysis:")
    if analysis:
        lines += [
            f"  Version:  {text(analysis.get('version') or status.get('targetModelVersion'))}"
            + (f" (compared with {analysis['comparedWith']})" if analysis.get("comparedWith") else ""),
            f"  Verdict:  {text(analysis.get('verdict'))}",
            f"  Reason:   {text(analysis.get('reason'))}",
            f"  Message:  {first_line(analysis.get('message'))}",
        ]
    else:
        lines.append("  (none yet)")
    conditions = [_dict(c) for c in status.get("conditions") or []]
    lines.append("Conditions:")
    if conditions:
        rows = [(text(c.get("type")), text(c.get("status")), text(c.get("reason")), first_line(c.get("message")))
                for c in conditions]
        lines += ["  " + line for line in table(("TYPE", "STATUS", "REASON", "MESSAGE"), rows).splitlines()]
    else:
        lines.append("  (none yet)")
    return "\n".join(lines)


def format_history(obj: dict[str, Any]) -> str:
    entries = _dict(obj.get("status")).get("history") or []
    if not isinstance(entries, list) or not entries:
        return f"No rollouts recorded yet in the status.history of {text(_dict(obj.get('metadata')).get('name'))}."
    rows = [tuple(first_line(_dict(e).get(f)) if _dict(e).get(f) not in (None, "") else MISSING
                  for f in HISTORY_FIELDS) for e in entries]
    return table(tuple(f.upper() for f in ("version", "verdict", "reason", "phase", "started", "finished")), rows)


# ---- requests (promote, rollback) --------------------------------------------------------------


def now_rfc3339() -> str:
    # timezone.utc, not datetime.UTC: the released single file runs on the user's python3, maybe < 3.11
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: UP017


def request(action: str, version: str, by: str) -> dict[str, str]:
    """The request annotation's value: the operator acts on it and names `by` in its Event."""
    return {"action": action, "version": version, "by": by, "at": now_rfc3339(), "id": uuid.uuid4().hex}


def target_version(obj: dict[str, Any], asked: str | None, done: str) -> str:
    """The version a promote or abort is aimed at (`done`: "promoted", "aborted"), or Refused: only the
    held or canary version, and only while it is held or its canary runs."""
    phases = (HELD_PHASE, CANARY_PHASE)
    name = text(_dict(obj.get("metadata")).get("name"))
    status = _dict(obj.get("status"))
    phase = status.get("phase")
    if phase not in phases:
        raise Refused(
            f"{name} is in phase {phase or '(none: the operator has not reported yet)'}, not {' or '.join(phases)}: "
            f"only a held version (its analysis verdict Inconclusive) or a running canary can be {done}. "
            f"See `kubectl modelops status {name}`; to serve an earlier version "
            f"instead, use `kubectl modelops rollback {name} --to VERSION`."
        )
    held = status.get("targetModelVersion")
    if not held:
        raise Refused(f"{name} is {phase} but its status names no targetModelVersion: pass --version V")
    if asked is not None and str(asked) != str(held):
        raise Refused(f"{name} is rolling out version {held}, not {asked}: only that version can be {done} "
                      f"(run again with --version {held}, or without --version)")
    return str(held)


def promote_version(obj: dict[str, Any], asked: str | None) -> str:
    return target_version(obj, asked, "promoted")


def abort_version(obj: dict[str, Any], asked: str | None) -> str:
    """Abort applies to a canary: a running one, or one held by its live verdict."""
    status = _dict(obj.get("status"))
    canary = _dict(status.get("canary"))
    if status.get("phase") == HELD_PHASE and not (canary.get("weight") and
                                                 canary.get("version") == status.get("targetModelVersion")):
        name = text(_dict(obj.get("metadata")).get("name"))
        raise Refused(f"{name} holds a version that never took traffic (no canary): nothing to abort; "
                      f"`kubectl modelops rollback {name} --to VERSION` pins the version to serve")
    return target_version(obj, asked, "aborted")


def rollback_patch(obj: dict[str, Any], version: str, req: dict[str, str]) -> dict[str, Any]:
    """One merge patch: pin the version, drop the alias (the CRD allows only one), record the request.
    The resourceVersion makes it conditional: a change since the read is a Conflict, not overwritten."""
    return {
        "metadata": {"annotations": {REQUEST_ANNOTATION: json.dumps(req)},
                     "resourceVersion": _dict(obj.get("metadata")).get("resourceVersion")},
        "spec": {"model": {"version": version, "alias": None}},
    }


def annotation_patch(obj: dict[str, Any], req: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"annotations": {REQUEST_ANNOTATION: json.dumps(req)},
                         "resourceVersion": _dict(obj.get("metadata")).get("resourceVersion")}}


# ---- commands ----------------------------------------------------------------------------------


def requester(kube: Kubectl) -> str:
    user = kube.whoami()
    if user is None:
        print("kubectl-modelops: `kubectl auth whoami` did not answer (a server before Kubernetes 1.28, or "
              "SelfSubjectReview disabled): the request records by=unknown", file=sys.stderr)
        return "unknown"
    return user


def cmd_status(kube: Kubectl, args: argparse.Namespace) -> None:
    print(format_status(kube.get(args.name)))


def cmd_history(kube: Kubectl, args: argparse.Namespace) -> None:
    print(format_history(kube.get(args.name)))


def cmd_promote(kube: Kubectl, args: argparse.Namespace) -> None:
    obj = kube.get(args.name)
    version = promote_version(obj, args.version)
    req = request("promote", version, requester(kube))
    kube.merge_patch(args.name, annotation_patch(obj, req))
    print(f"modeldeployment/{args.name}: asked the operator to promote version {version} (request {req['id']})")


def cmd_abort(kube: Kubectl, args: argparse.Namespace) -> None:
    obj = kube.get(args.name)
    version = abort_version(obj, args.version)
    req = request("abort", version, requester(kube))
    kube.merge_patch(args.name, annotation_patch(obj, req))
    print(f"modeldeployment/{args.name}: asked the operator to abort the canary of version {version} "
          f"(request {req['id']})")


def retrain_request(obj: dict[str, Any], by: str) -> dict[str, str]:
    """The retrain request, or Refused when the ModelDeployment has no spec.retrain. Cooldown and
    maxConcurrent are the operator's to judge (Event RetrainSkipped): it knows the running Jobs."""
    if not _dict(_dict(obj.get("spec")).get("retrain")):
        name = text(_dict(obj.get("metadata")).get("name"))
        raise Refused(f"{name} has no spec.retrain: add a spec.retrain.template (the training Job) to retrain it")
    return request("retrain", str(_dict(obj.get("status")).get("modelVersion") or ""), by)


def cmd_retrain(kube: Kubectl, args: argparse.Namespace) -> None:
    obj = kube.get(args.name)
    req = retrain_request(obj, requester(kube))
    kube.merge_patch(args.name, annotation_patch(obj, req))
    ns = f" -n {kube.namespace}" if kube.namespace else ""
    print(f"modeldeployment/{args.name}: asked the operator to retrain (request {req['id']}); it starts a Job or "
          f"says why not in an Event: kubectl get events{ns} --field-selector involvedObject.name={args.name}")


def cmd_rollback(kube: Kubectl, args: argparse.Namespace) -> None:
    if not VERSION_PATTERN.match(args.to):
        raise Refused(f"--to {args.to!r} is not a model version: give a version number such as 3")
    obj = kube.get(args.name)
    alias = _dict(_dict(obj.get("spec")).get("model")).get("alias")
    req = request("rollback", args.to, requester(kube))
    kube.merge_patch(args.name, rollback_patch(obj, args.to, req))
    print(f"modeldeployment/{args.name}: spec.model.version set to {args.to} (request {req['id']})")
    if alias:
        follow = json.dumps({"spec": {"model": {"alias": alias, "version": None}}})
        ns = f" -n {kube.namespace}" if kube.namespace else ""
        print(f"{args.name} no longer follows its alias {alias}: it stays on version {args.to} when {alias} moves.\n"
              f"To follow {alias} again: kubectl patch modeldeployment {args.name}{ns} --type merge -p '{follow}'")


COMMANDS = {"status": cmd_status, "history": cmd_history, "promote": cmd_promote, "abort": cmd_abort,
            "rollback": cmd_rollback, "retrain": cmd_retrain}


def _kube_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-n", "--namespace", default=default, help="the ModelDeployment's namespace")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", default=default, help="path to the kubeconfig file")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kubectl modelops", description=__doc__.split("\n\n")[0])
    _kube_flags(top, None)
    # the flags are accepted after the subcommand too (kubectl's habit); SUPPRESS keeps a top-level value
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {"status": "phase, versions, URL, conditions and the latest analysis verdict",
             "history": "the rollouts recorded in status.history",
             "promote": "accept the held (Inconclusive) version, or a canary at any step",
             "abort": "stop a canary: its weight to 0, its pods to zero; the stable version keeps serving",
             "rollback": "pin spec.model.version (stops following the alias)",
             "retrain": "start the spec.retrain Job now; the operator refuses it in the cooldown or at maxConcurrent"}
    for name, text_ in helps.items():
        p = sub.add_parser(name, help=text_, description=text_)
        p.add_argument("name", metavar="NAME", help="the ModelDeployment")
        _kube_flags(p, argparse.SUPPRESS)
        if name in ("promote", "abort"):
            p.add_argument("--version", help="the held or canary version (default: status.targetModelVersion); "
                                             "refused when another version is rolling out")
        if name == "rollback":
            p.add_argument("--to", required=True, metavar="VERSION", help="the model version to serve")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    kube = Kubectl(args.namespace, args.context, args.kubeconfig)
    try:
        COMMANDS[args.command](kube, args)
    except Refused as exc:
        print(f"kubectl-modelops: {exc}", file=sys.stderr)
        return 1
    except KubectlFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
