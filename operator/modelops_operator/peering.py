"""Which replica acts: kopf's peering, read back for the work kopf does not pause itself.

With peering on, kopf pauses its handlers on every replica but the one with the highest priority, but
tasks started at start-up (the alias poller) run everywhere. They ask `is_active` before each
round, which repeats kopf's own rule (kopf/_core/engines/peering.py, process_peering_event) over the
peering object's `status`, where each replica's keep-alive sits under its identity as
``{"priority": int, "lifetime": seconds, "lastseen": ISO 8601}``.
"""

from __future__ import annotations

import datetime
import logging
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from . import kube

PEERING_API_VERSION = "kopf.dev/v1"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peering:
    """This replica's place among its peers; `name` None: standalone, always active."""

    name: str | None
    identity: str
    priority: int = 0
    namespace: str | None = None  # KopfPeering there; None: the ClusterKopfPeering

    @property
    def kind(self) -> str:
        return "KopfPeering" if self.namespace else "ClusterKopfPeering"


def own_identity() -> str:
    """Unique per process, readable in the peering status: the host name is the pod name in a pod."""
    return f"{socket.gethostname()}/{uuid.uuid4().hex[:8]}"


def is_active(status: dict[str, Any] | None, identity: str, priority: int, now: datetime.datetime) -> bool:
    """Whether kopf lets the replica (identity, priority) act, given the peering object's `status`:
    no live other peer has a higher priority, nor the same one (kopf then pauses them all). A peer
    is live until lastseen + lifetime; without lastseen kopf counts it as seen now."""
    for peer_id, info in (status or {}).items():
        if peer_id == identity or not isinstance(info, dict):
            continue
        try:
            their_priority = int(info.get("priority", 0))
            lifetime = datetime.timedelta(seconds=int(info.get("lifetime", 60)))
            lastseen = datetime.datetime.fromisoformat(info["lastseen"]) if info.get("lastseen") else now
        except (TypeError, ValueError) as exc:  # not kopf's writing: kopf itself could not read it either
            log.warning("ignoring peer %r with an unreadable keep-alive %r: %s", peer_id, info, exc)
            continue
        if lastseen + lifetime > now and their_priority >= priority:
            return False
    return True


async def active(peering: Peering) -> bool:
    """`is_active` for this replica, now; standalone (no peering) is always active."""
    if not peering.name:
        return True
    body = await kube.get(PEERING_API_VERSION, peering.kind, peering.name, peering.namespace)
    status = (body or {}).get("status")
    return is_active(status, peering.identity, peering.priority, datetime.datetime.now(datetime.UTC))
