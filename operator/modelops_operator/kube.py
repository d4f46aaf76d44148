"""A thin async face over the Kubernetes API: server-side apply, read, delete, status patch.

The official client is synchronous; every call runs in a worker thread so the kopf event loop
(and every other ModelDeployment's handlers) never blocks on the network.
"""

from __future__ import annotations

import asyncio
import json
import os
from functools import cache
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import (
    ConflictError,
    NotFoundError,
    ResourceNotFoundError,
    UnprocessibleEntityError,
)

FIELD_MANAGER = "modelops-operator"
GROUP, VERSION, PLURAL = "modelops.io", "v1alpha1", "modeldeployments"


@cache
def _api_client() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        # KUBECONFIG read now: the client reads it once at import, before a caller may have set it
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return kubernetes.client.ApiClient()


@cache
def _dynamic() -> DynamicClient:
    return DynamicClient(_api_client())


def _resource(api_version: str, kind: str):
    return _dynamic().resources.get(api_version=api_version, kind=kind)


class Invalid(Exception):
    """The API server rejected an object (422): its message names the field."""


async def apply(obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Server-side apply as the operator's field manager, taking over conflicting fields of an object
    that is already ours (ownership.claim checks that first). Raises Invalid when the API server
    rejects the object (a bad resource quantity, an env entry it refuses). `dry_run`: validated and
    admitted by the server, not stored."""

    def call():
        try:
            res = _resource(obj["apiVersion"], obj["kind"])
        except ResourceNotFoundError as exc:  # e.g. an HTTPRoute on a cluster without the Gateway API
            raise Invalid(f"the cluster serves no {obj['apiVersion']} {obj['kind']}: install its CRDs "
                          f"(for HTTPRoute the Gateway API's standard channel) or remove the field that asks "
                          f"for it (spec.gateway)") from exc
        try:
            return _dynamic().server_side_apply(
                res, body=obj, field_manager=FIELD_MANAGER, force_conflicts=True,
                dry_run="All" if dry_run else None,
            ).to_dict()
        except UnprocessibleEntityError as exc:
            raise Invalid(_invalid_message(exc)) from exc

    return await asyncio.to_thread(call)


def _invalid_message(exc: UnprocessibleEntityError) -> str:
    try:
        return json.loads(exc.body)["message"]
    except (ValueError, KeyError, TypeError):
        return str(exc.summary() if hasattr(exc, "summary") else exc)


async def create(obj: dict[str, Any]) -> dict[str, Any] | None:
    """Create `obj`; None when an object of that name exists already (someone else created it first).
    Raises Invalid with the API server's message when it rejects the object."""

    def call():
        try:
            res = _resource(obj["apiVersion"], obj["kind"])
            return res.create(body=obj, namespace=obj["metadata"].get("namespace")).to_dict()
        except ConflictError:
            return None
        except UnprocessibleEntityError as exc:
            raise Invalid(_invalid_message(exc)) from exc

    return await asyncio.to_thread(call)


async def get(api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The object, or None when it is absent, or its kind is not served at all (no Gateway API CRDs:
    no HTTPRoute of any name exists)."""
    def call():
        try:
            return _resource(api_version, kind).get(name=name, namespace=namespace).to_dict()
        except (NotFoundError, ResourceNotFoundError):
            return None

    return await asyncio.to_thread(call)


async def list_objects(api_version: str, kind: str, namespace: str | None, label_selector: str) -> list[dict]:
    """Objects matching a label selector (filtered by the API server), in one namespace or (None) all."""
    def call():
        items = _resource(api_version, kind).get(namespace=namespace, label_selector=label_selector)
        return [item.to_dict() for item in items.items]

    return await asyncio.to_thread(call)


async def delete(api_version: str, kind: str, name: str, namespace: str, uid: str | None = None) -> bool:
    """Delete by name; with `uid`, only that very object (a precondition: a same-named replacement made
    meanwhile is left alone). False when it is gone, or was replaced."""

    def call():
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            _resource(api_version, kind).delete(name=name, namespace=namespace, body=body)
            return True
        except (NotFoundError, ConflictError):  # gone, or the precondition failed (409): not ours now
            return False

    return await asyncio.to_thread(call)


async def pod_log_tail(name: str, namespace: str, lines: int = 20) -> str:
    """The last lines of a pod's log ('' when it has none yet or is gone)."""

    def call():
        try:
            return kubernetes.client.CoreV1Api(_api_client()).read_namespaced_pod_log(
                name, namespace, tail_lines=lines, limit_bytes=8192)
        except ApiException:
            return ""

    return await asyncio.to_thread(call)


async def delete_background(api_version: str, kind: str, name: str, namespace: str) -> None:
    """Delete with its dependents (a Job's pods) collected in the background."""

    def call():
        try:
            _resource(api_version, kind).delete(name=name, namespace=namespace,
                                                body={"propagationPolicy": "Background"})
        except NotFoundError:
            pass

    await asyncio.to_thread(call)


async def merge_patch(api_version: str, kind: str, name: str, namespace: str, body: dict) -> None:
    def call():
        _resource(api_version, kind).patch(
            name=name, namespace=namespace, body=body, content_type="application/merge-patch+json"
        )

    await asyncio.to_thread(call)


async def set_pod_condition(name: str, namespace: str, condition: dict[str, Any]) -> None:
    """Set one pod condition (a readiness gate); strategic merge keys conditions by type."""

    def call():
        kubernetes.client.CoreV1Api(_api_client()).patch_namespaced_pod_status(
            name, namespace, {"status": {"conditions": [condition]}}
        )

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        if exc.status != 404:  # the pod is gone: nothing to admit
            raise


async def patch_status(name: str, namespace: str, status: dict[str, Any]) -> None:
    """Write status now, not at the handler's end, so long steps show their phase while they run."""

    def call():
        kubernetes.client.CustomObjectsApi(_api_client()).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        if exc.status != 404:  # deleted meanwhile: nothing to report to
            raise


class Gone(Exception):
    """The object a write was meant for no longer exists under that UID (deleted, or deleted and
    created again under the same name)."""


async def patch_status_of(uid: str, name: str, namespace: str, ops: list[dict[str, Any]]) -> None:
    """A JSON patch of the status whose first op tests metadata.uid: the API server applies it only
    to the object it was meant for, never to a new one that took the name meanwhile."""

    def call():
        kubernetes.client.CustomObjectsApi(_api_client()).patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, ops, _content_type="application/json-patch+json"
        )

    try:
        await asyncio.to_thread(call)
    except ApiException as exc:
        if exc.status == 404:
            raise Gone(f"{namespace}/{name} was deleted") from exc
        if exc.status == 422:  # the uid test failed, or the status itself was refused: tell them apart
            latest = await get(f"{GROUP}/{VERSION}", "ModelDeployment", name, namespace)
            if latest is None or latest["metadata"].get("uid") != uid:
                raise Gone(f"{namespace}/{name} was deleted and created again") from exc
        raise


async def patch_annotations(name: str, namespace: str, annotations: dict[str, str]) -> None:
    def call():
        kubernetes.client.CustomObjectsApi(_api_client()).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"annotations": annotations}}
        )

    await asyncio.to_thread(call)


async def list_model_deployments(namespace: str | None = None) -> list[dict[str, Any]]:
    """All ModelDeployments the operator may see: cluster-wide, or one namespace in namespaced mode."""

    def call():
        api = kubernetes.client.CustomObjectsApi(_api_client())
        if namespace:
            return api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
        return api.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]

    return await asyncio.to_thread(call)
