"""Fixtures: real ONNX models written to disk, an in-process app whose lifespan has run, and an in-process
ModelServer with its gRPC listener."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvloop

with warnings.catch_warnings():
    # Starlette deprecates its httpx-based TestClient in favour of httpx2, which is not a dependency here.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from modelops_inference.config import ServerConfig
from modelops_inference.grpc_server import GrpcServer
from modelops_inference.runtime import ModelRuntime
from modelops_inference.server import ModelServer, create_app

from . import models


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def mlp_path(model_dir) -> Path:
    return models.mlp(model_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def mlp_sha256(mlp_path) -> str:
    return hashlib.sha256(mlp_path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def lookup_path(model_dir) -> Path:
    return models.lookup(model_dir / "lookup.onnx")


@pytest.fixture(scope="session")
def two_inputs_path(model_dir) -> Path:
    return models.two_inputs(model_dir / "two_inputs.onnx")


@pytest.fixture(scope="session")
def fixed_batch_path(model_dir) -> Path:
    return models.mlp(model_dir / "fixed.onnx", batch=2)


def make_client(**config) -> TestClient:
    """An in-process client; entering it runs the lifespan, which loads the model."""
    config.setdefault("model_name", "mlp")
    return TestClient(create_app(ServerConfig(**config)), raise_server_exceptions=False)


@pytest.fixture
def client(mlp_path, mlp_sha256) -> Iterator[TestClient]:
    with make_client(model_uri=str(mlp_path), model_version="3", model_sha256=mlp_sha256) as c:
        c.app.state.server.runtime.wait_loaded(30)
        wait_ready(c)
        yield c


@contextlib.contextmanager
def serving(path, **config) -> Iterator[TestClient]:
    """An in-process server of the model at `path` as model m, version 2, once it is ready."""
    with make_client(model_uri=str(path), model_name="m", model_version="2", **config) as client:
        wait_ready(client)
        yield client


def v2_body(rows: np.ndarray, request_id: str | None = None) -> dict:
    """A v2 JSON inference request of FP32 `rows` as the input named `input`."""
    body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}
    if request_id is not None:
        body["id"] = request_id
    return body


def wait_ready(client: TestClient, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/v2/health/ready").status_code == 200:
            return
        if client.app.state.server.runtime.state.value == "failed":
            return
        time.sleep(0.02)
    raise TimeoutError("server not ready")


@pytest.fixture(scope="session")
def all_types_path(model_dir) -> Path:
    return models.all_types(model_dir / "all_types.onnx")


@pytest.fixture(scope="session")
def identity_path(model_dir) -> Path:
    return models.identity(model_dir / "identity.onnx")


@pytest.fixture(scope="session")
def typed_types_path(model_dir) -> Path:
    return models.all_types(model_dir / "typed_types.onnx", datatypes=models.TYPED_DATATYPES)


@dataclass
class Serving:
    """A ModelServer with its gRPC listener on an event loop in a thread, as `serve` runs them (minus
    uvicorn): `run` runs a coroutine on that loop, `target` is the gRPC address."""

    server: ModelServer
    listener: GrpcServer
    run: Callable[..., Any]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.listener.port}"


@contextlib.contextmanager
def grpc_serving(runtime_class: type[ModelRuntime] = ModelRuntime, **config) -> Iterator[Serving]:
    config.setdefault("model_name", "mlp")
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
    thread.start()

    def run(coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout)

    server_config = ServerConfig(**config)
    server = ModelServer(server_config, runtime_class(server_config))

    async def start() -> GrpcServer:
        listener = GrpcServer(server, host="127.0.0.1", port=0)
        await listener.start()
        server.listeners.append(listener)
        await server.start()
        return listener

    try:
        yield Serving(server, run(start()), run)
    finally:
        run(server.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
