"""Test-only fault injection: `--fault-error-rate` fails exactly that fraction of inference requests, over
HTTP (v2 and v1) and gRPC, with a 500 / INTERNAL that says it was injected and is counted like any 5xx."""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_inference import grpc_protocol as wire
from modelops_inference.config import parse_args
from modelops_inference.faults import FaultInjector
from modelops_inference.tensors import to_raw
from modelops_operator.manifests import RESERVED_ENV

from .conftest import grpc_serving, make_client, wait_ready

ROWS = np.array([[0.1, 0.2, 0.3, 0.4], [1, -1, 2, -2]], np.float32)
FAILED = [19, 39, 59, 79, 99]  # the 20th, 40th, ... of 100 requests at 0.05


def requests_total(text: str, protocol: str, endpoint: str) -> dict[str, float]:
    """status_code -> count of one endpoint's requests, parsed as Prometheus parses the exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (s.name == "modelops_inference_requests_total" and s.labels["protocol"] == protocol
                    and s.labels["endpoint"] == endpoint):
                out[s.labels["status_code"]] = s.value
    return out


def sample_value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                return s.value
    raise KeyError(name)


def settled(server, calls: int) -> str:
    """The exposition once `calls` gRPC inferences are counted: an aborted call is counted just after its
    client hears the status, so the last one may still be on its way when the client moves on."""
    deadline = time.monotonic() + 10
    while True:
        text = server.metrics.exposition().decode()
        done = sample_value(text, "modelops_inference_request_duration_seconds_count", protocol="grpc",
                            endpoint="infer")
        if done >= calls or time.monotonic() > deadline:
            return text
        time.sleep(0.01)


@pytest.mark.parametrize(("rate", "failed"), [
    (0.05, FAILED),
    (0.1, [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]),
    (0.3, [3, 6, 9, 13, 16, 19, 23, 26, 29, 33]),
    (1.0, list(range(100))),
])
def test_the_accumulator_fails_exactly_that_fraction_evenly_spread(rate, failed):
    faults = FaultInjector(rate)
    due = [i for i in range(100) if faults.due()]
    assert due[:len(failed)] == failed
    assert len(due) == round(100 * rate) and faults.injected == len(due)


@pytest.mark.parametrize("endpoint", ["infer", "predict"])
def test_over_http_one_request_in_twenty_is_an_injected_500_counted_as_500(mlp_path, endpoint):
    path, body = {
        "infer": ("/v2/models/mlp/infer", {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                                        "data": ROWS.ravel().tolist()}]}),
        "predict": ("/v1/models/mlp:predict", {"instances": ROWS.tolist()}),
    }[endpoint]
    with make_client(model_uri=str(mlp_path), fault_error_rate=0.05) as client:
        wait_ready(client)
        answers = [client.post(path, json=body) for _ in range(100)]
        text = client.get("/metrics").text
    assert [i for i, a in enumerate(answers) if a.status_code != 200] == FAILED
    for answer in (answers[i] for i in FAILED):
        assert answer.status_code == 500
        assert "injected fault: --fault-error-rate 0.05" in answer.json()["error"]
        assert "test only" in answer.json()["error"]
    counts = requests_total(text, "http", endpoint)
    assert (counts["200"], counts["500"]) == (95, 5)
    assert sample_value(text, "modelops_inference_request_duration_seconds_count", protocol="http",
                        endpoint=endpoint) == 100
    assert sample_value(text, "modelops_inference_prediction_score_count") == 95 * 2  # failed rows: not counted


def test_over_grpc_one_call_in_twenty_is_internal_counted_as_500(mlp_path):
    request = wire.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="input", datatype="FP32", shape=ROWS.shape)
    request.raw_input_contents.append(bytes(to_raw(ROWS)))
    with grpc_serving(model_uri=str(mlp_path), fault_error_rate=0.05) as serving:
        failed = []
        with grpc.insecure_channel(serving.target) as channel:
            stub = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                       request_serializer=wire.ModelInferRequest.SerializeToString,
                                       response_deserializer=wire.ModelInferResponse.FromString)
            for i in range(100):
                try:
                    stub(request, timeout=10)
                except grpc.RpcError as error:
                    failed.append((i, error.code(), error.details()))
        text = settled(serving.server, 100)
    assert [i for i, _, _ in failed] == FAILED
    assert {code for _, code, _ in failed} == {grpc.StatusCode.INTERNAL}
    assert all("injected fault: --fault-error-rate 0.05" in details for _, _, details in failed)
    counts = requests_total(text, "grpc", "infer")
    assert (counts["200"], counts["500"]) == (95, 5)
    assert sample_value(text, "modelops_inference_request_duration_seconds_count", protocol="grpc",
                        endpoint="infer") == 100


def test_off_by_default_and_on_it_warns_once_at_start_up(mlp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="modelops_inference.server"):
        with make_client(model_uri=str(mlp_path)) as client:
            wait_ready(client)
            assert all(client.post("/v1/models/mlp:predict", json={"instances": ROWS.tolist()}).status_code == 200
                       for _ in range(30))
        assert not [r for r in caplog.records if getattr(r, "event", "") == "fault_injection_on"]
        with make_client(model_uri=str(mlp_path), fault_error_rate=0.5) as client:
            wait_ready(client)
            for _ in range(4):
                client.post("/v1/models/mlp:predict", json={"instances": ROWS.tolist()})
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "fault_injection_on"]
    assert "--fault-error-rate 0.5" in record.getMessage() and "never in production" in record.getMessage()


def test_the_rate_comes_from_its_environment_variable_like_every_flag(monkeypatch):
    assert parse_args(["--model-uri", "m.onnx"]).fault_error_rate == 0
    monkeypatch.setenv("MODELOPS_FAULT_ERROR_RATE", "0.05")
    assert parse_args(["--model-uri", "m.onnx"]).fault_error_rate == 0.05
    assert parse_args(["--model-uri", "m.onnx", "--fault-error-rate", "0"]).fault_error_rate == 0


@pytest.mark.parametrize(("value", "message"), [
    ("1.5", "--fault-error-rate must be a fraction from 0 to 1 (0: off), got 1.5"),
    ("-0.1", "--fault-error-rate must be a fraction from 0 to 1 (0: off), got -0.1"),
    ("nan", "--fault-error-rate must be a fraction from 0 to 1 (0: off), got nan"),
    ("5%", "argument --fault-error-rate: invalid float value: '5%'"),
])
def test_a_bad_rate_exits_naming_the_flag(value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--model-uri", "m.onnx", "--fault-error-rate", value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_operator_lets_spec_serving_env_set_it():
    """Tests give a canary its error rate through spec.serving.env, so the CRD must not reserve the name."""
    assert "MODELOPS_FAULT_ERROR_RATE" not in RESERVED_ENV
