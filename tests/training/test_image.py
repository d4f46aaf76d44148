"""Dockerfile.training built for real on the local base image and run the way Kubernetes runs it
(non-root, read-only root filesystem, a tmpfs at /tmp): as the chart's MLflow server, and as an
export Job that leaves its outcome in a result file."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import httpx
import pytest

from ..support import built_image, docker, free_port

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
IMAGE = "modelops/training:test"


@pytest.fixture(scope="module")
def image() -> str:
    return built_image("training", IMAGE, timeout=3600)


READ_ONLY = ("--read-only", "--tmpfs", "/tmp:rw,size=1g", "--network", "host")


@pytest.fixture(scope="module")
def mlflow_in_image(image) -> str:
    """The image's own `mlflow server` on a free port of the host network; yields its URL."""
    port = free_port()
    cid = docker("run", "-d", *READ_ONLY, "--entrypoint", "mlflow", image, "server", "--host", "127.0.0.1",
                 "--port", str(port), "--backend-store-uri", "sqlite:////tmp/mlflow.db",
                 "--artifacts-destination", "/tmp/artifacts", "--serve-artifacts").stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, docker("logs", cid, check=False).stderr[-4000:]
            time.sleep(1)
        yield url
    finally:
        docker("rm", "-f", cid, check=False)


def test_training_image_is_non_root_and_runs_the_exporter(image):
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["modelops-export"]
    print(f"{image}: {int(docker('image', 'inspect', '-f', '{{.Size}}', image).stdout) / 1e6:.0f} MB")


def test_an_export_job_in_the_image_leaves_its_outcome_in_the_result_file(image, mlflow_in_image):
    from modelops_training.train import TrainConfig, train

    from ..conftest import tracking

    with tracking(mlflow_in_image):
        result = train(TrainConfig(dataset="breast_cancer", epochs=1, register="image-bc", alias="champion",
                                   progress=False, tracking_uri=mlflow_in_image))
    script = ("modelops-export models:/image-bc/$0 --tracking-uri $1 -q --result-file /tmp/result.json; "
              "code=$?; cat /tmp/result.json; exit $code")
    run = docker("run", "--rm", *READ_ONLY, "--entrypoint", "sh", image, "-c", script, result.version,
                 mlflow_in_image, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome["ok"] and outcome["version"] == result.version and len(outcome["sha256"]) == 64
