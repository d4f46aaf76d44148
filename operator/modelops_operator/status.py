"""Writes a ModelDeployment's status as it changes, with an Event for every phase transition."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from modelops_registry import redact_text

from . import kube, metrics
from .conditions import set_condition


class StatusWriter:
    """Holds the status as last written, so each step patches only what it changes."""

    def __init__(self, body: kopf.Body, status: dict[str, Any], logger: logging.Logger):
        self.body = body
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        self.generation = body["metadata"].get("generation")
        self.status = dict(status or {})
        self.logger = logger

    async def update(self, **fields: Any) -> None:
        """Replace the given status fields (nested objects too, not merged into the old ones)."""
        patch = {key: replacing(self.status.get(key), value) for key, value in fields.items()}
        self.status.update(fields)
        await kube.patch_status(self.name, self.namespace, patch)

    async def mark(self, step: str) -> None:
        """Stamp when a step of the current attempt ended (status.attempt.<step>At, epoch seconds):
        users see where a rollout spends its time, and benchmarks/rollout.py splits apply -> Ready."""
        await self.update(attempt={**(self.status.get("attempt") or {}), f"{step}At": round(time.time(), 3)})

    async def phase(self, phase: str, reason: str, message: str, *, warning: bool = False, **fields: Any) -> None:
        """Move to `phase`, recording why in an Event (Warning for failures). Credentials in the message
        (a URI's user:password@, a token from the environment) never reach the Event, log or status."""
        message = redact_text(message)
        kopf.event(self.body, type="Warning" if warning else "Normal", reason=reason, message=message)
        (self.logger.warning if warning else self.logger.info)(f"{phase}: {message}")
        metrics.set_phase(self.namespace, self.name, phase)
        await self.update(phase=phase, observedGeneration=self.generation, **fields)

    async def conditions(self, *changes: tuple[str, bool, str, str]) -> None:
        """Set several (type, ok, reason, message) conditions in one patch."""
        conditions = self.status.get("conditions")
        for type_, ok, reason, message in changes:
            conditions = set_condition(conditions, type_, ok, reason, redact_text(message), self.generation)
        await self.update(conditions=conditions)


def replacing(old: Any, new: Any) -> Any:
    """The merge patch that turns `old` into `new`: a merge patch merges nested objects, so keys that
    `new` drops are sent as null (else a new attempt would inherit the last one's deadline)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**{key: None for key in old if key not in new},
                **{key: replacing(old.get(key), value) for key, value in new.items()}}
    return new
