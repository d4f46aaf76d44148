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


def test_train_cli_refuses_a_flip_fraction_out_of_range_before_training(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_cli.main(["--dataset", "digits", "--sabotage", "flip=1.5"])
    assert exit_.value.code == 2
    assert "the flip fraction must be a number with 0 < fraction <= 1" in capsys.readouterr().err


def test_train_cli_accepts_a_flip_fraction():
    assert train_cli.parser().parse_args(["--dataset", "digits", "--sabotage", "flip=0.2"]).sabotage == "flip=0.2"


def _result(path) -> dict:
    text = path.read_text()
    assert len(text.encode()) <= export_cli.MAX_RESULT_BYTES
    return json.loads(text)


def test_export_cli_result_file_says_where_the_export_is(bc_v1, store, tmp_path):
    result_file = tmp_path / "termination-log"
    args = [f"models:/{BC}/1", "--out", str(tmp_path / "out"), "--tracking-uri", store.uri, "-q",
            "--result-file", str(result_file)]
    assert export_cli.main(args) == 0
    result = _result(result_file)
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    assert result == {"ok": True, "export_json_uri": record["export_json_uri"], "onnx_uri": record["onnx_uri"],
                      "sha256": record["sha256"], "run_id": record["run_id"],
                      "artifact_path": record["artifact_path"], "reused": result["reused"], "version": "1"}
    assert export_cli.main(args[:-2] + ["--result-file", str(result_file)]) == 0
    assert _result(result_file)["reused"] is True  # the second run finds the first one's export


def test_export_cli_result_file_on_an_unreachable_registry_is_retryable_and_redacted(monkeypatch, tmp_path):
    from tests.support import free_port

    monkeypatch.setenv("MODELOPS_MLFLOW_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-secret")
    result_file = tmp_path / "termination-log"
    uri = f"http://alice:hunter2-secret@127.0.0.1:{free_port()}"
    args = [f"models:/{BC}/1", "--tracking-uri", uri, "-q", "--result-file", str(result_file)]
    assert export_cli.main(args) == 4
    result = _result(result_file)
    assert result["ok"] is False and result["exit_code"] == 4 and result["retryable"] is True
    assert "unreachable" in result["error"] and "hunter2" not in result["error"] and "alice" not in result["error"]


def test_export_cli_result_file_on_a_missing_version_is_not_retryable(bc_v1, store, tmp_path):
    result_file = tmp_path / "termination-log"
    args = [f"models:/{BC}/99", "--tracking-uri", store.uri, "-q", "--result-file", str(result_file)]
    assert export_cli.main(args) == 3
    result = _result(result_file)
    assert (result["exit_code"], result["retryable"]) == (3, False)
    assert "versions: 1" in result["error"]


def test_result_json_cuts_a_long_error_to_fit_a_termination_message():
    long = "é" * 10_000  # escapes to six bytes each: the cut must count encoded bytes
    text = export_cli.result_json(export_cli.failure(6, False, long))
    assert len(text.encode()) <= export_cli.MAX_RESULT_BYTES
    result = json.loads(text)
    assert result["error"].endswith(export_cli.TRUNCATED) and result["exit_code"] == 6


def test_result_file_that_cannot_be_written_does_not_change_the_outcome(tmp_path, capsys):
    export_cli.write_result(str(tmp_path / "missing" / "file"), export_cli.failure(4, True, "x"))
    assert "cannot write the result file" in capsys.readouterr().err
