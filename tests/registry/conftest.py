"""Registry fixtures: registered versions in the real ``mlflow_server``, made without training.

A run with a small artifact stands in for a trained model: the registry client only reads
versions, aliases, runs and artifact listings, never the model itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass
class Registered:
    name: str
    run_id: str | None
    versions: list[str]


@pytest.fixture
def register(mlflow_server, tmp_path) -> Callable[..., Registered]:
    """``register(versions=2, alias="champion", with_run=True)``: a fresh model name with versions."""
    from modelops_registry.client import client

    mc = client(mlflow_server)

    def make(versions: int = 1, alias: str | None = None, with_run: bool = True) -> Registered:
        name = f"reg-{uuid.uuid4().hex[:8]}"
        run_id = None
        if with_run:
            exp = mc.get_experiment_by_name("registry-tests") or None
            exp_id = exp.experiment_id if exp else mc.create_experiment("registry-tests")
            run_id = mc.create_run(exp_id).info.run_id
            (tmp_path / "MLmodel").write_text("flavors: {}\n")
            mc.log_artifact(run_id, str(tmp_path / "MLmodel"), "model")
        mc.create_registered_model(name)
        made = []
        for _ in range(versions):
            source = f"runs:/{run_id}/model" if run_id else f"s3://bucket/{name}/model"  # never read
            made.append(str(mc.create_model_version(name, source=source, run_id=run_id).version))
        if alias:
            mc.set_registered_model_alias(name, alias, made[-1])
        return Registered(name, run_id, made)

    return make
