import json
import time

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from modelops_operator.webhooks import WebhookRejected, alias_event, sign, verify

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
