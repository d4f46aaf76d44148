"""The ModelDeployment state machine as pure decisions: from (spec, status, observations) to the next
phase and the conditions to write. reconcile.py does the I/O around them.

The table below is the README's state diagram, row for row (tests/operator/test_machine.py reads the
diagram and checks each row against it), so the documentation and the code cannot drift apart.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from typing import Any

SETTLED = frozenset({"Ready", "RolledBack", "Failed"})
# Where the poller and the webhook record an alias's current version. Not under modelops.io/: kopf
# leaves its own storage prefix out of the diff, and a change there would never reach the update handler.
ALIAS_VERSION_ANNOTATION = "alias.modelops.io/version"

# (phase, event) -> next phase. "settle" ends an attempt that shipped nothing: RolledBack while a
# last good version serves, Failed without one (`next_phase` picks).
TRANSITIONS: dict[tuple[str, str], str] = {
    ("", "Resolved"): "Pending",
    ("Pending", "Exporting"): "Exporting",
    ("Exporting", "ExportQueued"): "Exporting",
    ("Exporting", "ExportRetrying"): "Exporting",
    ("Exporting", "Exported"): "RollingOut",
    ("Exporting", "ExportFailed"): "settle",
    ("RollingOut", "Available"): "Verifying",
    ("RollingOut", "RolloutFailed"): "settle",
    ("RollingOut", "VerificationFailed"): "settle",
    ("RollingOut", "Conflict"): "settle",
    ("RollingOut", "InvalidSpec"): "settle",
    ("Verifying", "Verified"): "Ready",
    ("Verifying", "VerificationFailed"): "settle",
    # behaviour verdicts (verdicts.py): the registry gate before export, the replay at the gate
    ("Exporting", "RegistryMetricRegressed"): "settle",
    ("Exporting", "InconclusiveRejected"): "settle",
    ("Exporting", "AnalysisInconclusive"): "Held",
    ("RollingOut", "BehaviourRegressed"): "settle",
    ("RollingOut", "InconclusiveRejected"): "settle",
    ("RollingOut", "AnalysisInconclusive"): "Held",
    ("Held", "Promoted"): "Exporting",
    # canary releases (canary.py): the steps, then the stable Deployment moves to the version
    ("Exporting", "CanaryStarted"): "Canary",
    ("Canary", "CanaryPassed"): "RollingOut",
    ("Canary", "Promoted"): "RollingOut",
    ("Canary", "CanaryFailed"): "settle",
    ("Canary", "AbortRequested"): "settle",
    ("Canary", "RolloutFailed"): "settle",
    ("Canary", "VerificationFailed"): "settle",
    ("Canary", "BehaviourRegressed"): "settle",
    ("Canary", "InconclusiveRejected"): "settle",
    ("Canary", "Conflict"): "settle",
    ("Canary", "AnalysisInconclusive"): "Held",
    ("Held", "AbortRequested"): "settle",
}
# Events that apply in any phase: a new attempt (new generation or moved alias; an attempt still
# running is superseded by it), and the ways an attempt ends before it exports anything.
ANY_PHASE: dict[str, str] = {
    "NewAttempt": "Exporting",
    "VersionNotFound": "settle",
    "TrackingUriNotAllowed": "settle",
    "InvalidSpec": "settle",  # also before any export: no Ingress host can be chosen
}


class IllegalTransition(ValueError):
    pass


def next_phase(phase: str | None, event: str, has_last_good: bool) -> str:
    """The phase `event` moves `phase` to."""
    target = TRANSITIONS.get((phase or "", event)) or ANY_PHASE.get(event)
    if target is None:
        raise IllegalTransition(f"no transition from phase {phase or 'none'!r} on {event!r}")
    if target == "settle":
        return "RolledBack" if has_last_good else "Failed"
    return target


@dataclass(frozen=True)
class Attempt:
    """What one attempt was started for: the object (UID), its spec (generation) and the version the
    spec resolved to. Any of them changing supersedes the attempt."""

    uid: str
    generation: int | None
    version: str
    alias: bool = False  # the version came from an alias, so a moved alias supersedes it
    alias_seen: str | None = None  # the alias annotation when the attempt started


def superseded(attempt: Attempt, latest: dict[str, Any] | None) -> str | None:
    """Why the attempt no longer applies to the object as it is now, or None while it does.

    The alias annotation supersedes only when it moved after the attempt started, to a version other
    than the attempt's: the reconcile resolves the alias itself and may be ahead of the poller."""
    if latest is None:
        return "the ModelDeployment was deleted"
    meta = latest.get("metadata") or {}
    if meta.get("uid") != attempt.uid:
        return "the ModelDeployment was deleted and created again"
    if meta.get("deletionTimestamp"):
        return "the ModelDeployment is being deleted"
    if attempt.generation is not None and (meta.get("generation") or 0) != attempt.generation:
        return f"the spec changed (generation {attempt.generation} -> {meta.get('generation')})"
    moved = (meta.get("annotations") or {}).get(ALIAS_VERSION_ANNOTATION)
    if attempt.alias and moved is not None and moved not in (attempt.alias_seen, attempt.version):
        return f"the alias moved (version {attempt.version} -> {moved})"
    return None


def attempt_key(generation: int | None, suffix: str) -> str:
    return f"g{generation}-{suffix}"


def is_settled(status: dict[str, Any], key: str) -> bool:
    return (status.get("attempt") or {}).get("key") == key and status.get("phase") in SETTLED


# The conditions of one step of an attempt: reset to Unknown when an attempt starts, so nothing from
# the last version (its Available, its Verified) reads as true of the next one.
STEP_CONDITIONS = ("Exported", "Available", "Verified")

Condition = tuple[str, bool | None, str, str]  # (type, True/False/None for Unknown, reason, message)


def attempt_started(version: str, serving: str | None) -> list[Condition]:
    """The conditions a new attempt writes with its first phase."""
    waiting = f"attempt for version {version} has not reached this step yet"
    fallback = f"; version {serving} keeps serving meanwhile" if serving else ""
    return [
        *((type_, None, "Pending", waiting) for type_ in STEP_CONDITIONS),
        ("RolledBack", False, "Progressing", f"rolling out version {version}"),
        ready(None, "Progressing", f"version {version} is on its way{fallback}"),
    ]


def ready(ok: bool | None, reason: str, message: str) -> Condition:
    """The top-level condition `kubectl wait --for=condition=Ready` reads: True only when the version
    the current spec asks for serves, Unknown while an attempt runs, False when it settled short."""
    return ("Ready", ok, reason, message)


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_history_entry(history: list[dict[str, Any]] | None, attempt: dict[str, Any] | None,
                       analysis: dict[str, Any] | None, ended: dict[str, Any], limit: int,
                       now: float | None = None) -> list[dict[str, Any]]:
    """status.history with the attempt that just settled (or is held) as its newest entry, at most
    `limit` long. An attempt has one entry: held, then promoted and Ready, it is replaced, not repeated."""
    attempt = attempt or {}
    verdict = analysis if (analysis or {}).get("attempt") == attempt.get("key") else {}
    entry = {**ended, "attempt": attempt.get("key"), "verdict": verdict.get("verdict"),
             "verdictReason": verdict.get("reason"), "startedAt": _rfc3339(attempt.get("startedAt")),
             "finishedAt": _rfc3339(time.time() if now is None else now)}
    entry = {k: v for k, v in entry.items() if v is not None}
    kept = [e for e in history or [] if e.get("attempt") != entry.get("attempt")]
    return [*kept, entry][-max(1, limit):]
