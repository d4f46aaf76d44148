"""The same train -> register -> promote -> export flow against a real `mlflow server` process."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from modelops_training.export import export_model
from modelops_training.registry import alias_version
from modelops_training.train import TrainConfig, train
from tests.conftest import tracking

NAME = "server-breast-cancer"


@pytest.fixture(scope="module")
def served_versions(mlflow_server):
    with tracking(mlflow_server):
        return [
            train(
                TrainConfig(
                    "breast_cancer",
                    epochs=epochs,
                    seed=0,
                    register=NAME,
                    promote_if_better="test_f1",
                    progress=False,
                    tracking_uri=mlflow_server,
                )
            )
            for epochs in (1, 4)
        ]


def test_training_registers_and_promotes_through_the_server(served_versions, mlflow_server):
    first, second = served_versions
    assert (first.version, second.version) == ("1", "2")
    assert first.promotion.promoted
    champion = alias_version(NAME, "champion", tracking_uri=mlflow_server)
    better = second.test_metrics["test_f1"] > first.test_metrics["test_f1"]
    assert champion == ("2" if better else "1") and second.promotion.promoted == better


def test_export_through_the_server_is_fetchable_by_uri_and_reused(served_versions, mlflow_server, tmp_path):
    record = export_model(f"models:/{NAME}@champion", tracking_uri=mlflow_server)
    assert record.parity.passed and record.version == alias_version(NAME, "champion", tracking_uri=mlflow_server)
    code = (
        "import mlflow, sys; print(mlflow.artifacts.download_artifacts(sys.argv[1], tracking_uri=sys.argv[2], "
        "dst_path=sys.argv[3]))"
    )
    out = (
        subprocess.run(
            [sys.executable, "-c", code, record.onnx_uri, mlflow_server, str(tmp_path)],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    assert hashlib.sha256(Path(out).read_bytes()).hexdigest() == record.sha256
    assert export_model(f"models:/{NAME}/{record.version}", tracking_uri=mlflow_server).reused


def test_the_reference_profile_travels_through_the_server(served_versions, mlflow_server, tmp_path):
    import mlflow

    from modelops_training.reference import ARTIFACT, parse

    record = export_model(f"models:/{NAME}@champion", tracking_uri=mlflow_server)  # reused or new, as it comes
    assert record.reference == "reference.json"
    with tracking(mlflow_server):
        logged = mlflow.artifacts.load_text(f"runs:/{record.run_id}/{ARTIFACT}")
        assert mlflow.artifacts.load_text(f"runs:/{record.run_id}/{record.artifact_path}/reference.json") == logged
    assert parse(logged)["features"][0]["name"] == "mean radius"
    again = export_model(f"models:/{NAME}/{record.version}", tracking_uri=mlflow_server, out_dir=tmp_path)
    assert again.reused and (tmp_path / "reference.json").read_text() == logged
