"""The model runtime: loads from a file, a directory or an MLflow URI, verifies sha256, describes the
graph, warms up, and on any failure stays unready with the reason."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from modelops_inference.config import ServerConfig
from modelops_inference.runtime import ModelRuntime, ModelState

from ..conftest import tracking
from . import models, references


def load(uri, **config) -> ModelRuntime:
    runtime = ModelRuntime(ServerConfig(model_uri=str(uri), **config))
    runtime.load()
    return runtime


def test_loads_verifies_and_describes_the_graph(mlp_path, mlp_sha256):
    runtime = load(mlp_path, model_sha256=mlp_sha256)
    assert runtime.state is ModelState.READY and runtime.reason == ""
    assert runtime.sha256 == mlp_sha256
    assert [s.metadata() for s in runtime.inputs] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [s.metadata() for s in runtime.outputs] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    assert runtime.batchable


def test_runs_match_the_reference(mlp_path):
    runtime = load(mlp_path)
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    models.assert_mlp_answers(runtime.run({"input": x})["probabilities"], x)


def test_a_directory_with_model_onnx_is_accepted(tmp_path, mlp_path):
    (tmp_path / "model.onnx").write_bytes(mlp_path.read_bytes())
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert load(tmp_path).ready
    assert load(f"file://{tmp_path}").ready


def test_a_sha256_mismatch_keeps_the_model_unready_and_logs_one_json_error(mlp_path, caplog):
    with caplog.at_level(logging.ERROR):
        runtime = load(mlp_path, model_sha256="0" * 64)
    assert runtime.state is ModelState.FAILED
    assert f"sha256 mismatch for mlp.onnx: expected {'0' * 64}, got " in runtime.reason
    assert runtime.session is None
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "model_load_failed"]
    assert "sha256 mismatch" in record.error


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "missing.onnx", "does not exist"),
        (lambda d: d, "expected exactly one .onnx file"),
        (lambda d: (d / "junk.onnx").write_bytes(b"not onnx") and d / "junk.onnx", "onnxruntime cannot open"),
    ],
)
def test_unloadable_models_say_why(tmp_path, make, reason):
    runtime = load(make(tmp_path))
    assert runtime.state is ModelState.FAILED
    assert reason in runtime.reason


def test_a_fixed_batch_dimension_disables_batching(fixed_batch_path):
    runtime = load(fixed_batch_path)
    assert runtime.ready and not runtime.batchable
    assert runtime.inputs[0].shape == (2, 4)


def test_an_unreachable_mlflow_server_is_retried_then_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    sleeps = []
    monkeypatch.setattr("modelops_inference.runtime.time.sleep", sleeps.append)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    runtime = load("models:/nope/1", load_attempts=3, model_dir=str(tmp_path / "dl"))
    assert runtime.state is ModelState.FAILED
    assert "cannot download models:/nope/1" in runtime.reason
    assert sleeps == [2, 4]  # transient trouble is retried with backoff


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory, mlp_path):
    """A local MLflow store with the MLP logged by mlflow.onnx and registered as version 1, alias prod."""
    import mlflow
    import onnx

    root = tmp_path_factory.mktemp("mlflow")
    with tracking(f"sqlite:///{root}/mlflow.db") as uri:
        experiment = mlflow.create_experiment("inference-tests", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.onnx.log_model(onnx.load(str(mlp_path)), name="model", registered_model_name="tiny-mlp")
        mlflow.MlflowClient().set_registered_model_alias("tiny-mlp", "prod", "1")
        yield uri, run.info.run_id


def test_an_unknown_registered_version_fails_without_retrying(mlflow_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store[0])
    sleeps = []
    monkeypatch.setattr("modelops_inference.runtime.time.sleep", sleeps.append)
    runtime = load("models:/tiny-mlp/7", load_attempts=5, model_dir=str(tmp_path / "dl"))
    assert runtime.state is ModelState.FAILED
    assert "cannot download models:/tiny-mlp/7" in runtime.reason
    assert sleeps == []


@pytest.mark.parametrize(
    "uri", ["models:/tiny-mlp/1", "models:/tiny-mlp@prod", "runs:/{run}/model", "runs:/{run}/model/model.onnx"])
def test_mlflow_uris_are_downloaded_into_the_model_dir(mlflow_store, uri, tmp_path, monkeypatch):
    tracking, run_id = mlflow_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
    runtime = load(uri.format(run=run_id), model_dir=str(tmp_path / "dl"))
    assert runtime.ready, runtime.reason
    assert list((tmp_path / "dl").rglob("model.onnx"))
    assert json.dumps(runtime.inputs[0].metadata())


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mlp_path):
    """A run holding two exports as the exporter lays them out: `onnx/with/` with a reference.json beside
    model.onnx, `onnx/without/` with none."""
    import mlflow

    root = tmp_path_factory.mktemp("exported")
    for name in ("with", "without"):
        (root / name).mkdir()
        (root / name / "model.onnx").write_bytes(mlp_path.read_bytes())
    references.write(root / "with" / "reference.json", references.profile(np.ones((3, 4))))
    with tracking(f"sqlite:///{root}/mlflow.db") as uri:
        experiment = mlflow.create_experiment("exports", artifact_location=str(root / "artifacts"))
        with mlflow.start_run(experiment_id=experiment) as run:
            for name in ("with", "without"):
                mlflow.log_artifacts(str(root / name), artifact_path=f"onnx/{name}")
        yield uri, run.info.run_id, root


def test_the_reference_beside_an_exported_model_file_is_downloaded_with_it(exported, tmp_path, monkeypatch):
    tracking_uri, run_id, root = exported
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    runtime = load(f"runs:/{run_id}/onnx/with/model.onnx", model_dir=str(tmp_path / "dl"))
    assert runtime.ready, runtime.reason
    assert runtime.reference_note == f"runs:/{run_id}/onnx/with/reference.json"
    assert runtime.reference_path.read_bytes() == (root / "with" / "reference.json").read_bytes()


def test_an_export_without_a_reference_loads_and_says_none_was_found(exported, tmp_path, monkeypatch):
    tracking_uri, run_id, _ = exported
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    runtime = load(f"runs:/{run_id}/onnx/without/model.onnx", model_dir=str(tmp_path / "dl"))
    assert runtime.ready, runtime.reason
    assert runtime.reference_path is None
    assert runtime.reference_note.startswith(f"cannot fetch runs:/{run_id}/onnx/without/reference.json")


def test_a_local_model_finds_the_reference_in_its_folder_and_the_flag_wins(tmp_path, mlp_path):
    (tmp_path / "model.onnx").write_bytes(mlp_path.read_bytes())
    beside = references.write(tmp_path / "reference.json", references.profile(np.ones((3, 4))))
    assert load(tmp_path).reference_path == beside
    assert load(tmp_path / "model.onnx", reference="/nope.json").reference_note == "/nope.json is not a file"
    assert load(mlp_path).reference_path is None
