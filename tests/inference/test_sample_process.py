"""The real `modelops-serve` process keeping its input sample: rows served over HTTP (JSON and binary) and
gRPC come back exactly from the replay port, bounded; only the token reads them; only that port serves
them; no token, no port; a refused request is not recorded; SIGTERM closes every listener."""

from __future__ import annotations

import contextlib
import json
import signal
import socket

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from ..support import free_port
from .test_server_process import _sample, serve, v2_body

TOKEN = "s3cret-replay-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.contextmanager
def sampling(tmp_path, mlp_path, **env: str):
    replay_port = free_port()
    environment = {"MODELOPS_MODEL_URI": str(mlp_path), "MODELOPS_MODEL_NAME": "mlp",
                   "MODELOPS_REPLAY_PORT": str(replay_port), "MODELOPS_REPLAY_TOKEN": TOKEN,
                   "MODELOPS_SAMPLE_RATE": "1", **env}
    with serve(tmp_path, env=environment) as server:
        server.wait_ready()
        server.replay_url = f"http://127.0.0.1:{replay_port}"
        server.replay_port = replay_port
        yield server


def fetch(server, headers=AUTH, name: str = "mlp") -> httpx.Response:
    return httpx.get(f"{server.replay_url}/v2/models/{name}/sample", headers=headers, timeout=5)


def held(server) -> tuple[np.ndarray, dict]:
    response = fetch(server)
    assert response.status_code == 200, response.text
    replay = response.json()
    [tensor] = replay["inputs"]
    assert (tensor["name"], tensor["datatype"]) == ("input", "FP32")
    return np.asarray(tensor["data"], np.float32).reshape(tensor["shape"]), replay


def infer(server, rows: np.ndarray) -> None:
    response = httpx.post(server.url + "/v2/models/mlp/infer", json=v2_body(rows), timeout=10)
    assert response.status_code == 200, response.text


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_rows_served_over_http_json_binary_and_grpc_come_back_exactly(tmp_path, mlp_path):
    rng = np.random.default_rng(0)
    sent = [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 1, 3)]
    with sampling(tmp_path, mlp_path, MODELOPS_LOG_LEVEL="debug") as server:
        infer(server, sent[0])
        header = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                         "parameters": {"binary_data_size": 16}}]}).encode()
        binary = httpx.post(server.url + "/v2/models/mlp/infer", content=header + sent[1].tobytes(),
                            headers={"Inference-Header-Content-Length": str(len(header))})
        assert binary.status_code == 200, binary.text
        tensor = triton.InferInput("input", [3, 4], "FP32")
        tensor.set_data_from_numpy(sent[2])
        triton.InferenceServerClient(server.grpc_target).infer("mlp", [tensor])
        rows, replay = held(server)
        np.testing.assert_array_equal(rows, np.concatenate(sent))  # bit for bit, oldest first
        assert (replay["format"], replay["rows"], replay["observed"]) == ("modelops.replay/v1", 6, 3)
        metrics = httpx.get(server.url + "/metrics").text
        assert _sample(metrics, "modelops_inference_sample_rows{") == 6
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
    log = server.log.read_text()
    assert TOKEN not in log  # neither the token nor any recorded value is ever logged
    assert not any(repr(float(v))[:8] in log for v in sent[0].ravel()[:4])
    assert any(line.get("event") == "sample_listening" for line in server.log_lines())


def test_the_row_bound_evicts_the_oldest_rows(tmp_path, mlp_path):
    with sampling(tmp_path, mlp_path, MODELOPS_SAMPLE_ROWS="3") as server:
        for i in range(5):
            infer(server, np.full((1, 4), i, np.float32))
        rows, replay = held(server)
        assert rows[:, 0].tolist() == [2, 3, 4] and replay["observed"] == 5


def test_the_byte_bound_evicts_the_oldest_rows(tmp_path, mlp_path):
    with sampling(tmp_path, mlp_path, MODELOPS_SAMPLE_BYTES="40") as server:  # a row is 16 bytes: two fit
        infer(server, np.arange(4, dtype=np.float32)[:, None].repeat(4, axis=1))
        rows, _ = held(server)
        assert rows[:, 0].tolist() == [2, 3]


def test_a_refused_request_is_not_recorded(tmp_path, mlp_path):
    with sampling(tmp_path, mlp_path) as server:
        bad = httpx.post(server.url + "/v2/models/mlp/infer", json=v2_body(np.zeros((1, 5), np.float32)))
        assert bad.status_code == 400
        rows, replay = held(server)
        assert rows.shape == (0, 4) and (replay["rows"], replay["observed"]) == (0, 0)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}],
                         ids=["missing", "wrong", "not-bearer"])
def test_only_the_token_reads_the_sample(tmp_path, mlp_path, headers):
    with sampling(tmp_path, mlp_path) as server:
        infer(server, np.ones((1, 4), np.float32))
        response = fetch(server, headers)
        assert response.status_code == 401 and "bearer token" in response.json()["error"]
        assert "1.0" not in response.text


def test_an_unknown_model_is_404_and_the_main_port_never_serves_the_sample(tmp_path, mlp_path):
    with sampling(tmp_path, mlp_path) as server:
        assert fetch(server, name="other").status_code == 404
        main = httpx.get(server.url + "/v2/models/mlp/sample", headers=AUTH)
        assert main.status_code == 404 and "error" in main.json()
        assert httpx.get(server.replay_url + "/v2/models/mlp/infer", headers=AUTH).status_code == 404


def test_without_a_token_no_sample_is_kept_and_the_port_stays_closed(tmp_path, mlp_path):
    with sampling(tmp_path, mlp_path, MODELOPS_REPLAY_TOKEN="") as server:
        infer(server, np.ones((1, 4), np.float32))
        assert refuses(server.replay_port)
        assert _sample(httpx.get(server.url + "/metrics").text, "modelops_inference_sample_rows{") == 0
    [line] = [x for x in server.log_lines() if x.get("event") == "sample_off"]
    assert line["message"] == "input sample off: no token"


def test_sigterm_closes_the_sample_port_with_the_others(tmp_path, mlp_path):
    with sampling(tmp_path, mlp_path, MODELOPS_DRAIN_SECONDS="1") as server:
        server.process.send_signal(signal.SIGTERM)
        assert fetch(server).status_code == 200  # still answering while draining
        assert server.process.wait(15) == 0
        http_port = int(server.url.rsplit(":", 1)[1])
        grpc_port = int(server.grpc_target.rsplit(":", 1)[1])
        assert refuses(server.replay_port) and refuses(http_port) and refuses(grpc_port)
    assert not [x for x in server.log_lines() if x["level"] == "ERROR"]
