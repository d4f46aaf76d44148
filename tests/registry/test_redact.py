"""Credentials never leave in a message: URI userinfo, signed-URL parameters, secret env values."""

import pytest

from modelops_registry.redact import redact_text, redact_uri


@pytest.mark.parametrize(
    "uri, want",
    [
        ("http://user:pass@mlflow:5000/api", "http://***@mlflow:5000/api"),
        ("https://token@host", "https://***@host"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("models:/bc@champion", "models:/bc@champion"),  # an alias is not userinfo
        ("runs:/abc/model", "runs:/abc/model"),
    ],
)
def test_redact_uri_hides_userinfo_only(uri, want):
    assert redact_uri(uri) == want


def test_redact_text_hides_every_uri_userinfo_in_free_text():
    text = "MLflow at http://a:b@h1:5000 failed; retried https://c:d@h2/x (see models:/m@prod)"
    want = "MLflow at http://***@h1:5000 failed; retried https://***@h2/x (see models:/m@prod)"
    assert redact_text(text, env={}) == want


def test_redact_text_hides_secret_env_values_wherever_they_appear():
    env = {"MLFLOW_TRACKING_PASSWORD": "p4ssw0rd", "MLFLOW_TRACKING_TOKEN": "tok-123456", "HOME": "/tmp"}
    text = "401 for token tok-123456 (password p4ssw0rd) in /tmp"
    assert redact_text(text, env=env) == "401 for token *** (password ***) in /tmp"


def test_redact_text_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "abcd-efgh")
    assert redact_text("bearer abcd-efgh") == "bearer ***"


def test_very_short_secret_values_are_not_blanked_out_of_ordinary_words():
    assert redact_text("a model", env={"MLFLOW_TRACKING_PASSWORD": "a"}) == "a model"


def test_signed_url_parameters_are_hidden():
    text = "GET https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=abc123&part=1 failed"
    assert redact_text(text, env={}) == (
        "GET https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&part=1 failed"
    )
