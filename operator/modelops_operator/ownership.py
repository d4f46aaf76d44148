"""Whose object is it: the operator changes or deletes only the children its ModelDeployment controls.

An Ingress or Service that already carries the ModelDeployment's name but was made by someone else (a
person, Helm, another controller) is reported as a Conflict, never adopted:
server-side apply with forced conflicts and `kopf.adopt` would otherwise take it over silently, and a
delete by name would remove it. The decisions are pure; `claim` and `delete_owned` are the thin I/O.
"""

from __future__ import annotations

from typing import Any

import kopf

from . import kube

GC_WAIT_SECONDS = 3


class NotOurs(Exception):
    """A child's name is taken by an object this ModelDeployment does not control; nothing was touched."""

    def __init__(self, obj: dict[str, Any]):
        meta = obj.get("metadata") or {}
        self.ref = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
        super().__init__(
            f"{self.ref} exists and is not controlled by this ModelDeployment ({describe_owner(obj)}): "
            f"rename or delete it, or rename the ModelDeployment; the operator never adopts it")


def controller(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with controller: true (Kubernetes allows at most one), or None."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def is_ours(obj: dict[str, Any], owner_uid: str) -> bool:
    """Ours only when our ModelDeployment (by UID, not name: a deleted and recreated one is another
    owner) is its controller. Labels prove nothing: anyone can copy them."""
    ref = controller(obj)
    return ref is not None and ref.get("uid") == owner_uid


def describe_owner(obj: dict[str, Any]) -> str:
    """Who has it, for the Conflict message: its controller and the field managers that wrote it."""
    ref = controller(obj)
    owner = f"controlled by {ref.get('kind')}/{ref.get('name')}" if ref else "no owner"
    managers = sorted({m.get("manager") for m in (obj.get("metadata") or {}).get("managedFields") or []
                       if m.get("manager")})
    return f"{owner}; written by {', '.join(managers)}" if managers else owner


def of_predecessor(obj: dict[str, Any], name: str, owner_uid: str) -> bool:
    """Controlled by a ModelDeployment of this name but another UID: one deleted and created again,
    whose children the garbage collector is about to remove (a deleted owner's children go, or with
    orphan propagation lose that reference). Waited for, not reported as a conflict."""
    ref = controller(obj)
    return (ref is not None and ref.get("kind") == "ModelDeployment" and ref.get("name") == name
            and ref.get("uid") != owner_uid)


def first_foreign(existing: list[dict[str, Any] | None], owner_uid: str) -> dict[str, Any] | None:
    """The first existing object (None: absent) that is not ours, or None when all may be applied."""
    return next((obj for obj in existing if obj is not None and not is_ours(obj, owner_uid)), None)


async def claim(objs: list[dict[str, Any]], owner_uid: str, owner_name: str) -> None:
    """Read every child before any is applied; raise NotOurs when one of their names is taken, so an
    attempt either applies all of its children or touches none. `owner_name`: the ModelDeployment's
    (a canary's children are named <name>-canary, their owner <name>)."""
    existing = [await kube.get(o["apiVersion"], o["kind"], o["metadata"]["name"], o["metadata"]["namespace"])
                for o in objs]
    foreign = first_foreign(existing, owner_uid)
    if foreign is None:
        return
    if of_predecessor(foreign, owner_name, owner_uid):
        raise kopf.TemporaryError(f"{foreign['kind']} {foreign['metadata']['name']} belongs to the deleted "
                                  "ModelDeployment of this name; waiting for the garbage collector",
                                  delay=GC_WAIT_SECONDS)
    raise NotOurs(foreign)


async def owned(api_version: str, kind: str, name: str, namespace: str, owner_uid: str) -> dict[str, Any] | None:
    """The child when it exists and we control it, else None."""
    obj = await kube.get(api_version, kind, name, namespace)
    return obj if obj is not None and is_ours(obj, owner_uid) else None


async def delete_owned(api_version: str, kind: str, name: str, namespace: str, owner_uid: str) -> bool:
    """Delete a child only when we control it, with a UID precondition so a same-named object created
    between the read and the delete is never the one deleted. False when absent or not ours."""
    obj = await owned(api_version, kind, name, namespace, owner_uid)
    if obj is None:
        return False
    return await kube.delete(api_version, kind, name, namespace, uid=obj["metadata"]["uid"])
