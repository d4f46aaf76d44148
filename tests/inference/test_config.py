"""Flags and MODELOPS_* environment variables end in one validated ServerConfig."""

from __future__ import annotations

import pytest

from modelops_inference.config import ServerConfig, default_model_name, parse_args


def test_environment_variables_are_the_defaults_and_flags_override_them(monkeypatch):
    monkeypatch.setenv("MODELOPS_MODEL_URI", "models:/iris/3")
    monkeypatch.setenv("MODELOPS_PORT", "9000")
    monkeypatch.setenv("MODELOPS_BATCHING", "false")
    monkeypatch.setenv("MODELOPS_MAX_BATCH_DELAY_MS", "0.5")
    config = parse_args(["--port", "9100"])
    assert config.model_uri == "models:/iris/3"
    assert config.model_name == "iris"
    assert config.port == 9100
    assert config.batching is False
    assert config.max_batch_delay_ms == 0.5


def test_the_drift_reference_comes_from_the_environment_or_the_flag(monkeypatch):
    assert parse_args(["--model-uri", "m.onnx"]).reference == ""  # reference.json beside the model
    monkeypatch.setenv("MODELOPS_REFERENCE", "/profiles/r.json")
    assert parse_args(["--model-uri", "m.onnx"]).reference == "/profiles/r.json"
    assert parse_args(["--model-uri", "m.onnx", "--reference", "runs:/r/ref.json"]).reference == "runs:/r/ref.json"


def test_defaults_match_the_operator_contract():
    config = parse_args(["--model-uri", "/models/m.onnx"])
    assert (config.port, config.host, config.batching) == (8080, "0.0.0.0", True)
    assert config.model_name == "m"


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("models:/breast-cancer/2", "breast-cancer"),
        ("models:/digits@champion", "digits"),
        ("runs:/abc/model", "model"),
        ("/srv/iris.onnx", "iris"),
        ("/srv/model.onnx", "model"),
    ],
)
def test_the_model_name_defaults_from_the_uri(uri, name):
    assert default_model_name(uri) == name


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "a model URI is required"),
        (["--model-uri", "m.onnx", "--model-sha256", "abc"], "must be 64 hex digits"),
        (["--model-uri", "m.onnx", "--max-batch-size", "0"], "--max-batch-size must be at least 1"),
        (["--model-uri", "m.onnx", "--batching", "maybe"], "expected true or false"),
        (["--model-uri", "m.onnx", "--max-queue-depth", "-1"], "--max-queue-depth must be 0 (no limit) or more"),
        (["--model-uri", "m.onnx", "--grpc-port", "8080"], "--grpc-port and --port are both 8080"),
        (["--model-uri", "m.onnx", "--grpc-port", "70000"], "--grpc-port must be a TCP port (1-65535), got 70000"),
    ],
)
def test_bad_configuration_exits_with_a_message(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("MODELOPS_MODEL_URI", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_sha256_is_normalised_to_lower_case():
    assert ServerConfig(model_uri="m.onnx", model_sha256="A" * 64).model_sha256 == "a" * 64


def test_the_queue_depth_defaults_to_two_batches_and_follows_its_environment_variable(monkeypatch):
    assert parse_args(["--model-uri", "m.onnx"]).max_queue_depth == 64
    assert parse_args(["--model-uri", "m.onnx", "--max-batch-size", "100"]).max_queue_depth == 200
    explicit = parse_args(["--model-uri", "m.onnx", "--max-batch-size", "100", "--max-queue-depth", "7"])
    assert explicit.max_queue_depth == 7
    monkeypatch.setenv("MODELOPS_MAX_QUEUE_DEPTH", "0")
    assert parse_args(["--model-uri", "m.onnx"]).max_queue_depth == 0


def test_grpc_is_on_by_default_at_8081_and_configured_like_every_other_flag(monkeypatch):
    config = parse_args(["--model-uri", "/models/m.onnx"])
    assert (config.grpc, config.grpc_port) == (True, 8081)
    monkeypatch.setenv("MODELOPS_GRPC_PORT", "9000")
    assert parse_args(["--model-uri", "m.onnx"]).grpc_port == 9000
    monkeypatch.setenv("MODELOPS_GRPC", "false")
    assert parse_args(["--model-uri", "m.onnx"]).grpc is False
    # off, its port is not checked
    assert ServerConfig(model_uri="m.onnx", grpc=False, grpc_port=8080).grpc is False


def test_the_input_sample_defaults_and_its_environment_variables(monkeypatch):
    monkeypatch.delenv("MODELOPS_REPLAY_TOKEN", raising=False)
    config = parse_args(["--model-uri", "m.onnx"])
    assert (config.replay_port, config.sample_rows, config.sample_bytes, config.sample_rate) == (
        8082, 256, 4 * 1024 * 1024, 0.1)
    assert not config.sampling and config.sampling_off_reason == "no token"
    for name, value in {"REPLAY_PORT": "9082", "REPLAY_TOKEN": "t0ken", "SAMPLE_ROWS": "8",
                        "SAMPLE_BYTES": "1000", "SAMPLE_RATE": "1"}.items():
        monkeypatch.setenv(f"MODELOPS_{name}", value)
    config = parse_args(["--model-uri", "m.onnx"])
    assert (config.replay_port, config.replay_token, config.sample_rows, config.sample_bytes,
            config.sample_rate) == (9082, "t0ken", 8, 1000, 1.0)
    assert config.sampling and "t0ken" not in repr(config)  # a config printed never shows the token
    assert not ServerConfig(model_uri="m.onnx", replay_port=0, replay_token="t").sampling


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replay-port", "8080"], "--replay-port and --port are both 8080"),
        (["--replay-port", "8081"], "--replay-port and --grpc-port are both 8081"),
        (["--replay-port", "70000"], "--replay-port must be a TCP port (1-65535) or 0 (off)"),
        (["--sample-rows", "0"], "--sample-rows must be at least 1"),
        (["--sample-bytes", "0"], "--sample-bytes must be positive"),
        (["--sample-rate", "1.5"], "--sample-rate must be a fraction from 0 to 1"),
    ],
)
def test_bad_input_sample_configuration_exits_with_a_message(argv, message, capsys, monkeypatch):
    monkeypatch.setenv("MODELOPS_REPLAY_TOKEN", "t")
    with pytest.raises(SystemExit):
        parse_args(["--model-uri", "m.onnx", *argv])
    assert message in capsys.readouterr().err
