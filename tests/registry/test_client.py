"""The registry client against a real MLflow server: resolution, "not found" that says what
exists, and an unreachable registry that fails fast as retryable."""

import os
import time

import pytest

from modelops_registry import ModelRef, ModelVersionNotFound, RegistryUnavailable, RetryPolicy, resolve
from modelops_registry.client import HTTP_SETTINGS, apply_http_settings, call_with_retries, client
from tests.support import free_port

FAST = RetryPolicy(attempts=2, initial_delay=0.01)


def test_an_alias_resolves_to_its_concrete_version_and_uri(register, mlflow_server):
    model = register(versions=2, alias="champion")
    got = resolve(mlflow_server, f"models:/{model.name}@champion")
    assert (got.name, got.version, got.alias, got.run_id) == (model.name, "2", "champion", model.run_id)
    assert got.uri == f"models:/{model.name}/2"
    assert got.source == f"runs:/{model.run_id}/model"


def test_a_version_resolves_from_a_uri_or_a_parsed_ref(register, mlflow_server):
    model = register(versions=2)
    assert resolve(mlflow_server, f"models:/{model.name}/1").version == "1"
    assert resolve(mlflow_server, ModelRef(model.name, version="2")).alias is None


def test_a_missing_version_says_which_versions_and_aliases_exist(register, mlflow_server):
    model = register(versions=2, alias="champion")
    with pytest.raises(ModelVersionNotFound, match=r"version 7 .*versions: 2, 1; aliases: champion->v2"):
        resolve(mlflow_server, f"models:/{model.name}/7")
    with pytest.raises(ModelVersionNotFound, match=r"alias 'gone' .*aliases: champion->v2"):
        resolve(mlflow_server, f"models:/{model.name}@gone")


def test_a_missing_model_names_the_registered_ones_and_how_to_register(register, mlflow_server):
    model = register()
    with pytest.raises(ModelVersionNotFound, match=rf"'no-such-model' not found .*{model.name}.*--register") as err:
        resolve(mlflow_server, "models:/no-such-model/1")
    assert not err.value.retryable


def test_an_unreachable_registry_is_retryable_fails_fast_and_hides_credentials():
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable, match="unreachable while trying to look up") as err:
        resolve(f"http://bob:s3cret@127.0.0.1:{free_port()}", "models:/m/1", policy=FAST)
    assert err.value.retryable and "s3cret" not in str(err.value)
    assert time.monotonic() - started < 30


def test_only_unavailability_is_retried():
    calls = []

    def refuse():
        calls.append(1)
        raise ValueError("RESOURCE_DOES_NOT_EXIST")

    with pytest.raises(ValueError):
        call_with_retries(refuse, what="x", tracking_uri="http://h", policy=RetryPolicy(attempts=3))
    assert calls == [1]


def test_the_one_set_of_http_settings_is_applied_by_the_client_and_user_values_win(monkeypatch):
    for key in HTTP_SETTINGS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "99")
    client("http://127.0.0.1:1")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == HTTP_SETTINGS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
    apply_http_settings()  # idempotent
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "99"
