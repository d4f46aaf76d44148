"""Writes a ModelDeployment's status as it changes, with an Event for every phase transition."""

from __future__ import annotations

import logging
from typing import Any

import kopf

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
        self.status.update(fields)
        await kube.patch_status(self.name, self.namespace, fields)

    async def phase(self, phase: str, reason: str, message: str, *, warning: bool = False, **fields: Any) -> None:
        """Move to `phase`, recording why in an Event (Warning for failures)."""
        kopf.event(self.body, type="Warning" if warning else "Normal", reason=reason, message=message)
        (self.logger.warning if warning else self.logger.info)(f"{phase}: {message}")
        metrics.set_phase(self.namespace, self.name, phase)
        await self.update(phase=phase, observedGeneration=self.generation, **fields)

    async def conditions(self, *changes: tuple[str, bool, str, str]) -> None:
        """Set several (type, ok, reason, message) conditions in one patch."""
        conditions = self.status.get("conditions")
        for type_, ok, reason, message in changes:
            conditions = set_condition(conditions, type_, ok, reason, message, self.generation)
        await self.update(conditions=conditions)
