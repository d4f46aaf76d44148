"""Dockerfile.operator built for real on the local base image: the control plane stays slim (no
torch, no numpy, no training package, no MLflow server) and runs non-root on a read-only root."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ..support import built_image, docker

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
IMAGE = "modelops/operator:test"
MAX_MB = 400  # the local base image alone is about 275 MB


@pytest.fixture(scope="module")
def image() -> str:
    return built_image("operator", IMAGE, timeout=1200)


def run(image: str, *cmd: str) -> subprocess.CompletedProcess:
    return docker("run", "--rm", "--read-only", "--tmpfs", "/tmp:rw,size=64m", "--entrypoint", cmd[0],
                  image, *cmd[1:], check=False)


def test_operator_image_is_non_root_and_under_its_size_budget(image):
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["modelops-operator"]
    size_mb = int(docker("image", "inspect", "-f", "{{.Size}}", image).stdout) / 1e6
    print(f"{image}: {size_mb:.0f} MB")
    assert size_mb <= MAX_MB


def test_operator_image_holds_the_registry_client_and_nothing_of_the_data_plane(image):
    probe = ("import importlib.util as u; import modelops_registry.record, modelops_operator.main; "
             "print([m for m in ('torch', 'numpy', 'onnx', 'onnxruntime', 'modelops_training', 'modelops_inference',"
             " 'flask', 'sqlalchemy') if u.find_spec(m)], bool(u.find_spec('mlflow')))")
    result = run(image, "python3", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True"


def test_operator_starts_on_a_read_only_root(image):
    result = run(image, "modelops-operator", "--help")
    assert result.returncode == 0, result.stderr
