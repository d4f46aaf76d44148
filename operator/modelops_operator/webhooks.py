"""Webhooks: MLflow registry deliveries (HMAC-verified, they refresh aliases) and Alertmanager
notifications (Bearer token, they trigger retraining).

MLflow signs `"{delivery_id}.{timestamp}.{payload}"` with HMAC-SHA256 and sends
`X-MLflow-Signature: v1,<base64>`; deliveries older than five minutes are refused (replay).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import NamedTuple

MAX_AGE_SECONDS = 300
# What each header may hold, checked before any of it is used: a header is whatever bytes the sender
# chose, and anything else (non-ASCII text above all, which hmac.compare_digest refuses with a
# TypeError) must be a 401 naming the header, not a 500.
HEADER_FORMATS = {
    "X-MLflow-Delivery-Id": (re.compile(r"[!-~]{1,200}"), "printable ASCII"),
    "X-MLflow-Timestamp": (re.compile(r"[0-9]{1,12}"), "a unix time in ASCII digits"),
    "X-MLflow-Signature": (re.compile(r"v1,[A-Za-z0-9+/]{43}="), "v1,<base64 of an HMAC-SHA256>"),
}


class WebhookRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sign(secret: str, delivery_id: str, timestamp: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{payload}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(headers: dict[str, str]) -> tuple[str, str, str]:
    """(delivery id, timestamp, signature), each checked against HEADER_FORMATS, or a 401 naming the
    first header that is missing or malformed (its value is not echoed: it may be anything)."""
    missing = [name for name in HEADER_FORMATS if not headers.get(name.lower())]
    if missing:
        raise WebhookRejected(401, f"missing {', '.join(missing)}: is this an MLflow webhook delivery?")
    values = []
    for name, (pattern, expected) in HEADER_FORMATS.items():
        value = headers[name.lower()]
        if not (value.isascii() and pattern.fullmatch(value)):
            raise WebhookRejected(401, f"malformed {name}: expected {expected}")
        values.append(value)
    return values[0], values[1], values[2]


def verify(secret: str | None, headers: dict[str, str], payload: str, now: float | None = None) -> dict:
    """The parsed delivery, or WebhookRejected saying what was wrong. `headers` keys are lower case."""
    if not secret:
        raise WebhookRejected(503, "webhooks are disabled: set MODELOPS_WEBHOOK_SECRET on the operator")
    delivery_id, timestamp, signature = signed_headers(headers)
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, payload).encode(), signature.encode()):
        raise WebhookRejected(401, "bad signature: the webhook secret in MLflow and the operator differ")
    age = (now or time.time()) - int(timestamp)
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


# ---- Alertmanager (POST /webhooks/alertmanager) ---------------------------------------------------
# Alertmanager's webhook receiver sends no signature: its http_config authorization sends
# `Authorization: Bearer <credentials>`, the token the chart keeps in a Secret (<fullname>-alert-webhook).

BEARER = re.compile(r"Bearer ([!-~]{1,1024})")


def verify_bearer(token: str | None, authorization: str | None) -> None:
    """Nothing, or WebhookRejected: 503 when the operator has no token configured, 401 for a missing,
    malformed or wrong Authorization header (compared in constant time; neither value is echoed)."""
    if not token:
        raise WebhookRejected(503, "the Alertmanager webhook is not configured: set MODELOPS_ALERT_WEBHOOK_TOKEN on "
                                   "the operator (the chart's operator.alertWebhook)")
    if not authorization:
        raise WebhookRejected(401, "missing Authorization: expected Bearer <token>")
    match = BEARER.fullmatch(authorization) if authorization.isascii() else None
    if match is None:
        raise WebhookRejected(401, "malformed Authorization: expected Bearer <token>")
    if not hmac.compare_digest(match[1].encode(), token.encode()):
        raise WebhookRejected(401, "bad token: the Alertmanager credentials and the operator's token differ")


class FiringAlert(NamedTuple):
    alertname: str
    model_version: str | None  # the `model_version` label; None when the rule does not carry one


def firing_targets(payload: str) -> dict[tuple[str, str], list[FiringAlert]]:
    """{(namespace, ModelDeployment name): its firing alerts} of an Alertmanager (v4) notification,
    for alerts whose labels carry `namespace` and `model_name`; resolved alerts are left out."""
    try:
        delivery = json.loads(payload)
    except ValueError as exc:
        raise WebhookRejected(400, f"payload is not JSON: {exc}") from exc
    alerts = delivery.get("alerts") if isinstance(delivery, dict) else None
    if not isinstance(alerts, list):
        raise WebhookRejected(400, "payload has no alerts list: is this an Alertmanager webhook notification?")
    targets: dict[tuple[str, str], list[FiringAlert]] = {}
    for alert in alerts:
        labels = alert.get("labels") if isinstance(alert, dict) else None
        if not isinstance(labels, dict) or alert.get("status") != "firing":
            continue
        namespace, name, version = labels.get("namespace"), labels.get("model_name"), labels.get("model_version")
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
            targets.setdefault((namespace, name), []).append(FiringAlert(
                str(labels.get("alertname") or "unnamed"), str(version) if version not in (None, "") else None))
    return targets
