"""The operator's resolve step against a real MLflow server: one attempt, typed outcomes."""

import asyncio
import time
import uuid

import pytest

from modelops_operator.resolve import ModelVersionNotFound, RegistryUnavailable, resolve_model, resolve_version
from modelops_operator.spec import ModelRef
from modelops_registry.client import client
from tests.support import free_port


@pytest.fixture
def registered(mlflow_server, tmp_path) -> str:
    """A fresh registered model with two versions, alias champion on v2."""
    mc = client(mlflow_server)
    exp = mc.get_experiment_by_name("operator-resolve")
    run_id = mc.create_run(exp.experiment_id if exp else mc.create_experiment("operator-resolve")).info.run_id
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    mc.log_artifact(run_id, str(tmp_path / "MLmodel"), "model")
    name = f"op-{uuid.uuid4().hex[:8]}"
    mc.create_registered_model(name)
    for _ in range(2):
        mc.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id)
    mc.set_registered_model_alias(name, "champion", "2")
    return name


def test_an_alias_resolves_to_its_version_and_run(registered, mlflow_server):
    model = ModelRef(name=registered, alias="champion")
    assert asyncio.run(resolve_version(model, mlflow_server)) == "2"
    resolved = asyncio.run(resolve_model(model, mlflow_server))
    assert resolved.uri == f"models:/{registered}/2" and resolved.alias == "champion" and resolved.run_id


def test_a_missing_version_names_the_field_and_what_exists(registered, mlflow_server):
    with pytest.raises(ModelVersionNotFound, match=r"^spec.model: version 9 .*versions: 2, 1; aliases: champion->v2"):
        asyncio.run(resolve_version(ModelRef(name=registered, version="9"), mlflow_server))


def test_an_unreachable_registry_is_reported_after_one_attempt_without_credentials():
    started = time.monotonic()
    with pytest.raises(RegistryUnavailable) as err:
        asyncio.run(resolve_version(ModelRef(name="m", version="1"), f"http://u:pw@127.0.0.1:{free_port()}"))
    assert "u:pw" not in str(err.value) and not isinstance(err.value, ModelVersionNotFound)
    assert time.monotonic() - started < 30


def test_the_operator_reads_the_registry_without_importing_mlflow(registered, mlflow_server):
    """`import mlflow` holds ~100 MiB; the operator resolves, looks for exports and reports a missing
    version over MLflow's REST API, so a fresh operator process never imports it."""
    import subprocess
    import sys

    code = f"""
import sys
from modelops_operator import handlers, exporting  # everything the operator loads
from modelops_operator.resolve import resolve_model_sync, ModelVersionNotFound
from modelops_operator.spec import ModelRef
from modelops_registry import find_export
resolved = resolve_model_sync(ModelRef(name={registered!r}, alias="champion"), {mlflow_server!r})
assert resolved.version == "2", resolved
assert find_export({mlflow_server!r}, resolved, opset=18, quantize="none", tolerance=1e-4) is None
try:
    resolve_model_sync(ModelRef(name={registered!r}, version="9"), {mlflow_server!r})
except ModelVersionNotFound as exc:
    assert "versions: 2, 1" in str(exc), exc
loaded = sorted(m for m in sys.modules if m == "mlflow" or m.startswith("mlflow."))
print(loaded)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]", res.stdout
