"""MLflow registry webhooks: verify the HMAC signature MLflow sends, then refresh aliases.

MLflow signs `"{delivery_id}.{timestamp}.{payload}"` with HMAC-SHA256 and sends
`X-MLflow-Signature: v1,<base64>`; deliveries older than five minutes are refused (replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

MAX_AGE_SECONDS = 300


class WebhookRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sign(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{payload}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str | None, headers: dict[str, str], payload: str, now: float | None = None) -> dict:
    """The parsed delivery, or WebhookRejected saying what was wrong."""
    if not secret:
        raise WebhookRejected(503, "webhooks are disabled: set MODELOPS_WEBHOOK_SECRET on the operator")
    delivery_id = headers.get("x-mlflow-delivery-id", "")
    timestamp = headers.get("x-mlflow-timestamp", "")
    signature = headers.get("x-mlflow-signature", "")
    if not (delivery_id and timestamp and signature):
        raise WebhookRejected(401, "missing X-MLflow-Delivery-Id, X-MLflow-Timestamp or X-MLflow-Signature")
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, payload), signature):
        raise WebhookRejected(401, "bad signature: the webhook secret in MLflow and the operator differ")
    try:
        age = (now or time.time()) - int(timestamp)
    except ValueError as exc:
        raise WebhookRejected(400, f"X-MLflow-Timestamp {timestamp!r} is not a unix time") from exc
    if abs(age) > MAX_AGE_SECONDS:
        raise WebhookRejected(401, f"delivery is {age:.0f}s old (max {MAX_AGE_SECONDS}s)")
    try:
        return json.loads(payload)
    except ValueError as exc:
        raise WebhookRejected(400, f"payload is not JSON: {exc}") from exc


def alias_event(delivery: dict) -> tuple[str, str | None] | None:
    """(model name, alias) for events that can move what an alias points at, else None."""
    entity, data = delivery.get("entity"), delivery.get("data") or {}
    if entity == "model_version_alias" and data.get("name"):
        return data["name"], data.get("alias")
    if entity == "model_version" and data.get("name"):
        return data["name"], None
    return None
