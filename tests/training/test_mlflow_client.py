import os
import time
from pathlib import Path

import pytest

from modelops_training import mlflow_client as mc
from modelops_training.errors import RegistryUnavailableError
from tests.support import free_port

FAST = mc.RetryPolicy(attempts=3, initial_delay=0.01)


def test_tracking_uri_prefers_caller_then_env_then_the_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mc.resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert mc.resolve_tracking_uri() == "http://env:5000"
    assert mc.resolve_tracking_uri("http://arg:5000") == "http://arg:5000"


def test_default_data_dir_is_the_repositorys_ignored_folder(monkeypatch):
    monkeypatch.delenv("MODELOPS_DATA_DIR", raising=False)
    root = Path(__file__).resolve().parents[2]
    assert mc.data_dir() == root / ".data"
    assert ".data" in (root / ".gitignore").read_text()


def test_embedded_store_artifacts_live_next_to_the_database(tmp_path):
    assert mc.artifact_root_for(f"sqlite:///{tmp_path}/x/mlflow.db") == (tmp_path / "x" / "artifacts").as_uri()
    assert mc.artifact_root_for("http://mlflow:5000") is None


def test_retries_only_unavailability_then_says_what_to_do():
    calls = []

    def down():
        calls.append(1)
        raise ConnectionError("Connection refused")

    with pytest.raises(RegistryUnavailableError, match="unreachable while trying to list.*3 attempts") as err:
        mc.call_with_retries(down, what="list", tracking_uri="http://u:p@host:1", policy=FAST)
    assert len(calls) == 3 and err.value.retryable
    assert "u:p" not in str(err.value)


def test_other_errors_are_not_retried():
    calls = []

    def refuse():
        calls.append(1)
        raise ValueError("RESOURCE_DOES_NOT_EXIST")

    with pytest.raises(ValueError):
        mc.call_with_retries(refuse, what="x", tracking_uri="http://h", policy=FAST)
    assert len(calls) == 1


def test_recovers_when_the_server_comes_back():
    attempts = iter([ConnectionError("Connection refused"), None])

    def flaky():
        if exc := next(attempts):
            raise exc
        return "ok"

    assert mc.call_with_retries(flaky, what="x", tracking_uri="http://h", policy=FAST) == "ok"


def test_unreachable_server_fails_fast_with_a_clear_error():
    started = time.monotonic()
    with pytest.raises(RegistryUnavailableError, match="is running"):
        mc.check_reachable(f"http://127.0.0.1:{free_port()}", FAST)
    assert time.monotonic() - started < 10


def test_fluent_tracking_uri_is_put_back_after_the_block_even_on_error(monkeypatch, tmp_path):
    import mlflow

    outer, inner = f"sqlite:///{tmp_path}/outer.db", f"sqlite:///{tmp_path}/inner.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", outer)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with pytest.raises(RuntimeError, match="inside"), mc.fluent_tracking_uri(inner) as uri:
        assert uri == inner
        assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (inner, inner)
        assert os.environ["MLFLOW_REGISTRY_URI"] == inner
        raise RuntimeError("inside")
    assert os.environ["MLFLOW_TRACKING_URI"] == outer
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == (outer, outer)
