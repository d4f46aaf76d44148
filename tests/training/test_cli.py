"""The console scripts: one message and a distinct non-zero exit code per failure."""

import json

import pytest

from modelops_training import export_cli, train_cli
from tests.training.conftest import BC


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.parametrize(
    "uri, code, text",
    [
        ("not-a-uri", 2, "cannot read model URI"),
        ("models:/no-such-model/1", 3, "registered model 'no-such-model' not found"),
    ],
)
def test_export_cli_bad_input_exits_non_zero_with_one_message(bc_v1, store, tmp_path, capsys, uri, code, text):
    assert export_cli.main([uri, "--out", str(tmp_path), "--tracking-uri", store.uri, "-q"]) == code
    assert text in _one_error_line(capsys)


def test_export_cli_unreachable_server(monkeypatch, tmp_path, capsys):
    from tests.support import free_port

    monkeypatch.setenv("MODELOPS_MLFLOW_RETRIES", "1")
    uri = f"http://127.0.0.1:{free_port()}"
    assert export_cli.main([f"models:/{BC}/1", "--out", str(tmp_path), "--tracking-uri", uri, "-q"]) == 4
    assert "unreachable" in _one_error_line(capsys)


def test_export_cli_writes_both_files_and_prints_the_record(bc_v1, store, tmp_path, capsys):
    args = [f"models:/{BC}@champion", "--out", str(tmp_path), "--tracking-uri", store.uri, "--json", "-q"]
    assert export_cli.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["version"] == "1" and printed["parity"]["passed"]
    assert json.loads((tmp_path / "export.json").read_text())["sha256"] == printed["sha256"]
    assert (tmp_path / "model.onnx").stat().st_size == printed["size_bytes"]


def test_export_cli_parity_failure_exit_code(bc_v1, store, tmp_path, capsys):
    args = [
        f"models:/{BC}/1",
        "--out",
        str(tmp_path),
        "--tracking-uri",
        store.uri,
        "-q",
        "--quantize",
        "dynamic-int8",
        "--int8-tolerance",
        "1e-9",
    ]
    assert export_cli.main(args) == 7
    assert "int8 parity gate failed" in _one_error_line(capsys)
    assert not (tmp_path / "export.json").exists()


def test_train_cli_refuses_alias_without_register(store, capsys):
    assert train_cli.main(["--dataset", "digits", "--alias", "champion", "--tracking-uri", store.uri]) == 8
    assert "need --register" in _one_error_line(capsys)


def test_train_cli_trains_registers_and_promotes(store, capsys):
    from tests.conftest import tracking

    args = [
        "--dataset",
        "breast_cancer",
        "--epochs",
        "1",
        "--register",
        "cli-bc",
        "--promote-if-better",
        "test_f1",
        "--tracking-uri",
        store.uri,
        "--no-progress",
        "--json",
    ]
    with tracking(store.uri):
        assert train_cli.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["registered_uri"] == "models:/cli-bc/1"
    assert result["promotion"]["promoted"] and result["promotion"]["alias"] == "champion"
