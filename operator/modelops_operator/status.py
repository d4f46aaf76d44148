"""Writes a ModelDeployment's status as it changes, with an Event for every phase transition."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from modelops_registry import redact_text

from . import gate, kube, machine, metrics
from .conditions import set_condition


class Superseded(Exception):
    """The attempt no longer applies to the object: its spec changed, its alias moved or it was
    deleted (and perhaps created again). The attempt stops; the next event starts the new one."""


class StatusWriter:
    """Holds the status as last written, so each step patches only what it changes."""

    def __init__(self, body: kopf.Body, status: dict[str, Any], logger: logging.Logger, history_limit: int = 10):
        self.body = body
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        self.uid = body["metadata"].get("uid")
        self.generation = body["metadata"].get("generation")
        self.status = dict(status or {})
        self.logger = logger
        self.attempt: machine.Attempt | None = None  # set once the spec resolved to a version
        self.history_limit = history_limit

    async def update(self, **fields: Any) -> None:
        """Replace the given status fields (nested objects too, not merged into the old ones), on this
        object only: a ModelDeployment deleted and created again under the name supersedes us."""
        ops = status_ops(self.uid, fields, has_status=bool(self.status))
        self.status.update(fields)
        try:
            await kube.patch_status_of(self.uid, self.name, self.namespace, ops)
        except kube.Gone as exc:
            raise Superseded(str(exc)) from exc

    async def ensure_current(self) -> dict[str, Any] | None:
        """Raise Superseded when the object has moved on from this attempt (called between steps and on
        every poll of a long one, so an edit takes effect within seconds, not after the whole attempt);
        the object as it is now (None before the attempt is known: nothing was read)."""
        if self.attempt is None:
            return None
        latest = await kube.get(f"{kube.GROUP}/{kube.VERSION}", "ModelDeployment", self.name, self.namespace)
        if reason := machine.superseded(self.attempt, latest):
            raise Superseded(reason)
        return latest

    async def mark(self, step: str) -> None:
        """Stamp when a step of the current attempt ended (status.attempt.<step>At, epoch seconds):
        users see where a rollout spends its time, and benchmarks/rollout.py splits apply -> Ready."""
        await self.update(attempt={**(self.status.get("attempt") or {}), f"{step}At": round(time.time(), 3)})

    async def phase(self, phase: str, reason: str, message: str, *, warning: bool = False,
                    conditions: tuple[machine.Condition, ...] = (), **fields: Any) -> None:
        """Move to `phase` (with `conditions` in the same patch), recording why in an Event (Warning for
        failures). Credentials in the message (a URI's user:password@, a token from the environment)
        never reach the Event, log or status. The Event follows the write, so a superseded attempt
        announces nothing."""
        message = redact_text(message)
        if conditions:
            fields["conditions"] = self._set(conditions)
        if phase in machine.SETTLED or phase == "Held":
            fields["history"] = machine.with_history_entry(
                self.status.get("history"), self.status.get("attempt"), self.status.get("analysis"),
                {"version": self.status.get("targetModelVersion"), "phase": phase, "reason": reason},
                self.history_limit)
        await self.update(phase=phase, observedGeneration=self.generation, **fields)
        await gate.sweep(self.namespace, self.name, self.status)  # pods that turned ready meanwhile
        kopf.event(self.body, type="Warning" if warning else "Normal", reason=reason, message=message)
        (self.logger.warning if warning else self.logger.info)(f"{phase}: {message}")
        metrics.set_phase(self.namespace, self.name, phase)

    async def conditions(self, *changes: machine.Condition) -> None:
        """Set several (type, ok, reason, message) conditions in one patch."""
        await self.update(conditions=self._set(changes))

    def _set(self, changes) -> list[dict[str, Any]]:
        conditions = self.status.get("conditions")
        for type_, ok, reason, message in changes:
            conditions = set_condition(conditions, type_, ok, reason, redact_text(message), self.generation)
        return conditions


def status_ops(uid: str, fields: dict[str, Any], has_status: bool) -> list[dict[str, Any]]:
    """The JSON patch that writes `fields` into the status of the object with `uid`: the uid test
    first; each field replaced whole (a null is pruned by the API server, which removes the field)."""
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/uid", "value": uid}]
    if not has_status:  # "add /status/x" needs /status to exist
        return [*ops, {"op": "add", "path": "/status",
                       "value": {k: v for k, v in fields.items() if v is not None}}]
    return [*ops, *({"op": "add", "path": f"/status/{key}", "value": value} for key, value in fields.items())]
