import asyncio
import dataclasses
import json
import socket
import threading
import time

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from modelops_operator import http_server
from modelops_operator.config import OperatorConfig
from modelops_operator.webhooks import WebhookRejected, alias_event, firing_targets, sign, verify, verify_bearer
from tests.support import free_port, wait_until

PAYLOAD = json.dumps({"entity": "model_version_alias", "action": "created",
                      "data": {"name": "cancer", "alias": "champion", "version": "2"}})


def headers(secret="s3cret", timestamp=None, payload=PAYLOAD):
    ts = str(int(timestamp or time.time()))
    return {"x-mlflow-delivery-id": "d1", "x-mlflow-timestamp": ts,
            "x-mlflow-signature": _generate_hmac_signature(secret, "d1", ts, payload)}


def test_our_signature_is_mlflows_signature():
    assert sign("k", "id", "123", "{}") == _generate_hmac_signature("k", "id", "123", "{}")


def test_a_signed_delivery_is_accepted_and_names_the_alias():
    delivery = verify("s3cret", headers(), PAYLOAD)
    assert alias_event(delivery) == ("cancer", "champion")


@pytest.mark.parametrize(
    "secret, hdrs, status",
    [
        (None, headers(), 503),
        ("s3cret", {}, 401),
        ("s3cret", headers(secret="other"), 401),
        ("s3cret", headers(timestamp=time.time() - 3600), 401),
    ],
    ids=["disabled", "unsigned", "wrong-secret", "replayed"],
)
def test_bad_deliveries_are_rejected(secret, hdrs, status):
    with pytest.raises(WebhookRejected) as err:
        verify(secret, hdrs, PAYLOAD)
    assert err.value.status == status


def test_tampered_payload_is_rejected():
    with pytest.raises(WebhookRejected, match="bad signature"):
        verify("s3cret", headers(), PAYLOAD.replace("2", "3"))


def test_only_registry_events_that_can_move_an_alias_matter():
    assert alias_event({"entity": "model_version", "data": {"name": "m"}}) == ("m", None)
    assert alias_event({"entity": "prompt", "data": {"name": "p"}}) is None


@pytest.fixture
def webhook_url():
    """The operator's real HTTP server (http_server.serve, as the operator runs it) on a free port."""
    port = free_port()
    config = dataclasses.replace(OperatorConfig.from_env({}), api_port=port, webhook_secret="s3cret")
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    task = loop.create_task(http_server.serve(config, "no-such-namespace", stopped))
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), daemon=True)
    thread.start()
    wait_until("the operator's HTTP server", lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True,
               timeout=10, interval=0.05, ignore=(OSError,))
    yield "127.0.0.1", port
    loop.call_soon_threadsafe(stopped.set)
    thread.join(10)


def post_raw(address: tuple[str, int], header_lines: list[bytes], body: bytes = PAYLOAD.encode()) -> tuple[int, dict]:
    """POSTs a delivery with headers given as raw bytes (no client would send non-ASCII ones for us)."""
    request = b"\r\n".join([b"POST /webhooks/mlflow HTTP/1.1", b"Host: operator", b"Connection: close",
                            b"Content-Type: application/json", b"Content-Length: %d" % len(body),
                            *header_lines, b"", body])
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, content = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(content)


def raw_headers(payload: str = PAYLOAD, **overrides: bytes) -> list[bytes]:
    good = {k: v.encode() for k, v in headers(payload=payload).items()}
    return [name.encode() + b": " + value for name, value in {**good, **overrides}.items() if value is not None]


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"x-mlflow-signature": "v1,é".encode()}, "X-MLflow-Signature"),
        ({"x-mlflow-signature": b"v1,\xff\xfe"}, "X-MLflow-Signature"),
        ({"x-mlflow-signature": b"garbage"}, "malformed X-MLflow-Signature"),
        ({"x-mlflow-signature": None}, "missing"),
        ({"x-mlflow-timestamp": "١٧٠٠٠٠٠٠٠٠".encode()}, "X-MLflow-Timestamp"),
        ({"x-mlflow-timestamp": b"soon"}, "X-MLflow-Timestamp"),
        ({"x-mlflow-timestamp": None}, "missing"),
        ({"x-mlflow-delivery-id": "dé".encode()}, "X-MLflow-Delivery-Id"),
    ],
    ids=["non-ascii-signature", "non-utf8-signature", "malformed-signature", "no-signature",
         "non-ascii-digits-timestamp", "non-numeric-timestamp", "no-timestamp", "non-ascii-delivery-id"],
)
def test_malformed_signature_headers_get_401_with_a_reason_never_500(webhook_url, overrides, reason):
    status, body = post_raw(webhook_url, raw_headers(**overrides))
    assert status == 401, body
    assert reason in body["error"]


def test_a_signed_delivery_through_the_http_server_is_accepted(webhook_url):
    """(An event that moves no alias: this test has no cluster to list ModelDeployments in.)"""
    payload = json.dumps({"entity": "prompt", "action": "created", "data": {"name": "p"}})
    status, body = post_raw(webhook_url, raw_headers(payload), payload.encode())
    assert (status, body) == (200, {"accepted": True, "moved": 0})


def test_a_body_that_is_not_utf8_gets_400_not_500(webhook_url):
    status, body = post_raw(webhook_url, raw_headers(), b"\xff\xfe{}")
    assert status == 400, body
    assert "UTF-8" in body["error"]


# ---- Alertmanager (POST /webhooks/alertmanager) ---------------------------------------------------

TOKEN = "alert-t0ken"


def alertmanager_payload(*alerts: dict) -> str:
    """An Alertmanager v4 webhook notification."""
    return json.dumps({"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "modelops",
                       "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                       "truncatedAlerts": 0, "alerts": list(alerts)})


def alert(status="firing", **labels) -> dict:
    return {"status": status, "labels": {"alertname": "ModelopsFeatureDrift", **labels}, "annotations": {},
            "startsAt": "2026-12-01T12:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f1"}


@pytest.mark.parametrize("authorization, status", [
    (None, 401), ("", 401), (TOKEN, 401), ("Basic " + TOKEN, 401), ("Bearer wrong", 401),
    ("Bearer " + TOKEN + "x", 401), ("Bearer tøken", 401), ("Bearer " + TOKEN, None),
], ids=["missing", "empty", "no-scheme", "basic", "wrong", "longer", "non-ascii", "good"])
def test_the_bearer_token_is_checked(authorization, status):
    if status is None:
        verify_bearer(TOKEN, authorization)
        return
    with pytest.raises(WebhookRejected) as err:
        verify_bearer(TOKEN, authorization)
    assert err.value.status == status and TOKEN not in str(err.value)


def test_without_a_configured_token_the_endpoint_is_not_configured():
    with pytest.raises(WebhookRejected) as err:
        verify_bearer(None, "Bearer anything")
    assert err.value.status == 503 and "not configured" in str(err.value)


def test_firing_alerts_naming_a_namespace_and_model_are_targets():
    payload = alertmanager_payload(
        alert(namespace="ml", model_name="cancer", feature="mean radius"),
        alert(namespace="ml", model_name="cancer", alertname="ModelopsPredictionDrift"),  # one per deployment
        alert(status="resolved", namespace="ml", model_name="digits"),
        alert(namespace="ml"),  # no model_name
    )
    assert firing_targets(payload) == {("ml", "cancer"): [("ModelopsFeatureDrift", None),
                                                          ("ModelopsPredictionDrift", None)]}


def test_each_alert_carries_its_model_version_label():
    payload = alertmanager_payload(alert(namespace="ml", model_name="cancer", model_version="2"),
                                   alert(namespace="ml", model_name="cancer", model_version="3"))
    assert [a.model_version for a in firing_targets(payload)[("ml", "cancer")]] == ["2", "3"]


@pytest.mark.parametrize("payload", ["not json", "[]", json.dumps({"alerts": "x"})])
def test_a_payload_that_is_no_notification_is_a_400(payload):
    with pytest.raises(WebhookRejected) as err:
        firing_targets(payload)
    assert err.value.status == 400


@pytest.fixture
def recorded(monkeypatch):
    """retraining.record_alerts replaced: what the endpoint hands on, with no cluster."""
    calls = []

    async def record(targets, namespace):
        calls.append((targets, namespace))
        return [f"{ns}/{name}" for ns, name in targets], 0

    monkeypatch.setattr(http_server.retraining, "record_alerts", record)
    return calls


async def post_alerts(token: str | None, headers: dict[str, str], body: str) -> tuple[int, dict]:
    from aiohttp.test_utils import TestClient, TestServer

    config = dataclasses.replace(OperatorConfig.from_env({}), alert_webhook_token=token)
    async with TestClient(TestServer(http_server.make_app(config, "ml"))) as client:
        res = await client.post("/webhooks/alertmanager", data=body, headers=headers)
        return res.status, await res.json()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
                         ids=["unauthenticated", "wrong-token", "no-bearer"])
def test_the_endpoint_refuses_without_the_token_and_acts_on_nothing(recorded, headers, caplog):
    payload = alertmanager_payload(alert(namespace="ml", model_name="cancer"))
    status, body = asyncio.run(post_alerts(TOKEN, headers, payload))
    assert status == 401 and "error" in body
    assert recorded == []
    assert TOKEN not in caplog.text and TOKEN not in json.dumps(body)


def test_the_endpoint_answers_503_when_no_token_is_configured(recorded):
    status, body = asyncio.run(post_alerts(None, {"Authorization": "Bearer " + TOKEN}, alertmanager_payload()))
    assert status == 503 and "not configured" in body["error"]
    assert recorded == []


def test_the_endpoint_hands_the_firing_targets_on_with_the_good_token(recorded):
    payload = alertmanager_payload(alert(namespace="ml", model_name="cancer"))
    status, body = asyncio.run(post_alerts(TOKEN, {"Authorization": "Bearer " + TOKEN}, payload))
    assert (status, body) == (200, {"accepted": True, "triggered": ["ml/cancer"], "ignored": 0})
    assert recorded == [({("ml", "cancer"): [("ModelopsFeatureDrift", None)]}, "ml")]
