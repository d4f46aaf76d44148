"""status.conditions bookkeeping, following the Kubernetes API conventions: one entry per type,
lastTransitionTime moves only when the status flips."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

CONDITION_TYPES = ("Ready", "Exported", "Available", "Verified", "RolledBack", "Degraded")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with `type_` set (status None is "Unknown"); the input is left untouched."""
    if type_ not in CONDITION_TYPES:
        raise ValueError(f"unknown condition type {type_!r}")
    value = "Unknown" if status is None else "True" if status else "False"
    current = {c["type"]: c for c in conditions or []}
    previous = current.get(type_)
    changed = previous is None or previous.get("status") != value
    current[type_] = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": now() if changed else previous.get("lastTransitionTime", now()),
        **({"observedGeneration": generation} if generation is not None else {}),
    }
    return [current[t] for t in CONDITION_TYPES if t in current]


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
