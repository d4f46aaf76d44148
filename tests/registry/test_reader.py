"""The operator's registry writes and reads (runs, model version tags, artifacts) against a real
`mlflow server` serving artifacts, through both readers: MLflow's REST API and MlflowClient."""

from __future__ import annotations

import uuid

import pytest

from modelops_registry.client import client
from modelops_registry.errors import RegistryAnswer
from modelops_registry.reader import MlflowReader, RestReader, Run


@pytest.fixture(params=["rest", "mlflow-client"])
def rd(request, mlflow_server):
    return RestReader(mlflow_server) if request.param == "rest" else MlflowReader(mlflow_server)


@pytest.fixture
def run_id(mlflow_server) -> str:
    mc = client(mlflow_server)
    exp = mc.get_experiment_by_name("reader-tests")
    exp_id = exp.experiment_id if exp else mc.create_experiment("reader-tests")
    return mc.create_run(exp_id, tags={"team": "modelops"}).info.run_id


def test_get_run_answers_the_latest_metric_values_and_the_tags(rd, run_id, mlflow_server):
    mc = client(mlflow_server)
    mc.log_metric(run_id, "accuracy", 0.5, step=0)
    mc.log_metric(run_id, "accuracy", 0.93, step=1)
    mc.log_metric(run_id, "latency_ms", 4.25)
    run = rd.get_run(run_id)
    assert isinstance(run, Run) and run.run_id == run_id
    assert run.metrics == {"accuracy": 0.93, "latency_ms": 4.25}
    assert run.tags["team"] == "modelops"
    assert run.experiment_id == mc.get_run(run_id).info.experiment_id
    assert run.artifact_uri.startswith("mlflow-artifacts:")


def test_get_run_of_an_unknown_run_is_mlflows_not_found(rd):
    with pytest.raises(RegistryAnswer) as exc:
        rd.get_run(uuid.uuid4().hex)
    assert exc.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_a_model_version_tag_set_is_visible_to_mlflowclient(rd, register, mlflow_server):
    reg = register(versions=2)
    rd.set_model_version_tag(reg.name, reg.versions[1], "modelops.verdict", "Inconclusive")
    tags = client(mlflow_server).get_model_version(reg.name, reg.versions[1]).tags
    assert tags["modelops.verdict"] == "Inconclusive"
    assert "modelops.verdict" not in client(mlflow_server).get_model_version(reg.name, reg.versions[0]).tags


def test_a_tag_on_a_missing_version_is_refused_with_mlflows_code(rd, register):
    reg = register()
    with pytest.raises(RegistryAnswer) as exc:
        rd.set_model_version_tag(reg.name, "99", "k", "v")
    assert exc.value.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def test_an_uploaded_artifact_is_listed_downloaded_and_read_back(rd, run_id, mlflow_server, tmp_path):
    data = b'{"verdict": "Pass"}\n' * 10
    rd.upload_artifact(run_id, "analysis/verdict.json", data)
    listed = {a.path: a for a in client(mlflow_server).list_artifacts(run_id, "analysis")}
    assert listed["analysis/verdict.json"].file_size == len(data)
    local = client(mlflow_server).download_artifacts(run_id, "analysis/verdict.json", str(tmp_path))
    assert open(local, "rb").read() == data
    assert rd.read_artifact(run_id, "analysis/verdict.json", max_bytes=len(data)) == data


def test_reading_a_missing_artifact_answers_none(rd, run_id):
    rd.upload_artifact(run_id, "analysis/present.txt", b"x")
    assert rd.read_artifact(run_id, "analysis/absent.json", max_bytes=1024) is None
    assert rd.read_artifact(run_id, "nowhere/absent.json", max_bytes=1024) is None


def test_an_artifact_over_the_limit_is_too_large(rd, run_id):
    rd.upload_artifact(run_id, "big.bin", b"\0" * 300_000)
    with pytest.raises(RegistryAnswer) as exc:
        rd.read_artifact(run_id, "big.bin", max_bytes=299_999)
    assert exc.value.error_code == "TOO_LARGE" and "299999 bytes" in exc.value.message


def test_an_artifact_path_leaving_the_run_is_refused(rd, run_id):
    with pytest.raises(ValueError, match="inside the run"):
        rd.upload_artifact(run_id, "../other-run/x", b"x")


def test_rest_uploads_only_through_a_proxied_artifact_store(mlflow_server, tmp_path):
    mc = client(mlflow_server)
    exp_id = mc.create_experiment(f"direct-{uuid.uuid4().hex[:8]}", artifact_location=(tmp_path / "direct").as_uri())
    run = mc.create_run(exp_id).info.run_id
    with pytest.raises(RegistryAnswer) as exc:
        RestReader(mlflow_server).upload_artifact(run, "verdict.json", b"{}")
    assert exc.value.error_code == "UNSUPPORTED" and "proxied artifact store" in exc.value.message
