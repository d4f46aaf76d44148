"""Dockerfile.inference built for real on the local base image and run the way Kubernetes runs it:
non-root, read-only root filesystem with a tmpfs at /tmp, model by local path or by MLflow URI."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from ..conftest import tracking as use_tracking
from ..support import built_image, docker, free_port, mlflow_server
from . import models

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
IMAGE = "modelops/inference:test"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image("inference", IMAGE, timeout=1200)


@contextlib.contextmanager
def container(image: str, *args: str, env: dict[str, str]):
    flags = [f"--env={k}={v}" for k, v in env.items()]
    cid = docker("run", "-d", "--read-only", "--tmpfs", "/tmp:rw,size=256m", "--health-interval=1s",
                 *flags, *args, image).stdout.strip()
    try:
        yield cid
    finally:
        print(docker("logs", cid, check=False).stdout[-4000:])
        docker("rm", "-f", cid, check=False)


def wait_ready(url: str, cid: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(docker("inspect", "-f", "{{json .State}}", cid).stdout)
        assert state["Running"], docker("logs", cid, check=False).stdout
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(docker("logs", cid, check=False).stdout)


def infer(url: str, name: str) -> None:
    rows = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    body = {"id": "img", "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                     "data": rows.ravel().tolist()}]}
    response = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    [out] = response.json()["outputs"]
    models.assert_mlp_answers(np.reshape(out["data"], out["shape"]), rows)


def test_image_is_slim_non_root_and_has_a_healthcheck(image):
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])
    assert config["Entrypoint"] == ["modelops-serve"]
    # mlflow-skinny is there (the client that fetches artifacts); what a tracking server needs is not.
    present = docker("run", "--rm", "--entrypoint", "python3", image, "-c",
                     "import importlib.util as u; print([m for m in ('torch', 'flask', 'gunicorn', 'sqlalchemy',"
                     " 'alembic', 'sklearn', 'pandas') if u.find_spec(m)], bool(u.find_spec('mlflow')))").stdout
    assert present.strip() == "[] True"
    size = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout)
    print(f"{image}: {size / 1e6:.0f} MB")


def test_image_serves_a_local_model_on_a_read_only_root_and_stops_cleanly(image, tmp_path, mlp_path, mlp_sha256):
    models_dir = tmp_path / "models"
    models_dir.mkdir(mode=0o755)
    shutil.copy(mlp_path, models_dir / "mlp.onnx")
    (models_dir / "mlp.onnx").chmod(0o644)
    models_dir.chmod(0o755)
    port = free_port()
    env = {"MODELOPS_MODEL_URI": "/models/mlp.onnx", "MODELOPS_MODEL_NAME": "mlp",
           "MODELOPS_MODEL_SHA256": mlp_sha256}
    with container(image, "-v", f"{models_dir}:/models:ro", "-p", f"127.0.0.1:{port}:8080", env=env) as cid:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, cid)
        infer(url, "mlp")
        deadline = time.monotonic() + 30
        while docker("inspect", "-f", "{{.State.Health.Status}}", cid).stdout.strip() != "healthy":
            assert time.monotonic() < deadline, "HEALTHCHECK never passed"
            time.sleep(0.5)
        docker("stop", "-t", "20", cid)
        assert docker("inspect", "-f", "{{.State.ExitCode}}", cid).stdout.strip() == "0"
        logs = docker("logs", cid).stdout
        assert all(json.loads(line) for line in logs.splitlines() if line.strip())


def test_image_fetches_a_registered_model_by_alias_from_an_mlflow_server(image, tmp_path, mlp_path):
    import mlflow
    import onnx

    with mlflow_server(tmp_path, workers=2) as server:
        tracking = server.url
        # tracking and registry both: an earlier test's registry URI must not leak in
        with use_tracking(tracking):
            experiment = mlflow.create_experiment("image-test")
            with mlflow.start_run(experiment_id=experiment):
                mlflow.onnx.log_model(onnx.load(str(mlp_path)), name="model", registered_model_name="image-mlp")
            mlflow.MlflowClient().set_registered_model_alias("image-mlp", "champion", "1")
        port = free_port()
        env = {"MODELOPS_MODEL_URI": "models:/image-mlp@champion", "MLFLOW_TRACKING_URI": tracking,
               "MODELOPS_PORT": str(port), "MODELOPS_MODEL_VERSION": "1"}
        with container(image, "--network", "host", env=env) as cid:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, cid)
            infer(url, "image-mlp")
