"""Export records: JSON round trips without numpy or torch, and finding a complete earlier export
in a real MLflow server (folders written the way modelops-export lays them out)."""

import json
from dataclasses import replace

import pytest

from modelops_registry import ExportRecord, ParityReport, ParityResult, TensorInfo, find_export, read_export, resolve
from modelops_registry.client import client
from modelops_registry.record import EXPORT_EXPERIMENT, EXPORT_RUN_TAG, artifact_dir

ONNX = b"\x08\x07fake-onnx-bytes"


def record(name="m", version="1", run_id="r", *, opset=18, quantize="none", tolerance=1e-4, digest="abc123",
           created_at="2026-01-01T00:00:00+00:00", passed=True) -> ExportRecord:
    path = artifact_dir(opset, quantize, digest)
    stage = ParityResult(1e-6, 1e-5, tolerance, 68, passed, 1.0)
    return ExportRecord(
        source_uri=f"models:/{name}/{version}", name=name, version=version, model_uri=f"models:/{name}/{version}",
        run_id=run_id, flavor="pytorch", artifact_path=path, onnx_uri=f"runs:/{run_id}/{path}/model.onnx",
        export_json_uri=f"runs:/{run_id}/{path}/export.json", sha256="0" * 64, size_bytes=len(ONNX), opset=opset,
        quantize=quantize, inputs=[TensorInfo("input", "FP32", [-1, 30])],
        outputs=[TensorInfo("probabilities", "FP32", [-1, 2])],
        parity=ParityReport.from_stages({"onnx": stage, "ort_optimized": stage}),
        input_example=[[0.5] * 30], example_outputs={"probabilities": [[0.25, 0.75]]}, versions={"torch": "x"},
        settings_hash=digest, created_at=created_at, export_seconds=1.5,
    )


def publish(tracking_uri, run_id, rec: ExportRecord, tmp_path, *, onnx=ONNX, marker=True) -> None:
    """Upload model.onnx, then export.json (the completion marker), as the exporter does."""
    mc = client(tracking_uri)
    folder = tmp_path / rec.settings_hash
    folder.mkdir(exist_ok=True)
    (folder / "model.onnx").write_bytes(onnx)
    mc.log_artifact(run_id, str(folder / "model.onnx"), rec.artifact_path)
    if marker:
        (folder / "export.json").write_text(rec.to_json())
        mc.log_artifact(run_id, str(folder / "export.json"), rec.artifact_path)


def test_a_record_round_trips_through_json_with_typed_parts():
    rec = record()
    rec.parity.int8 = ParityResult(0.01, 0.1, 0.1, 68, True, 0.99)
    again = ExportRecord.from_json(rec.to_json())
    assert again == rec
    assert isinstance(again.inputs[0], TensorInfo) and isinstance(again.parity.stages["onnx"], ParityResult)
    assert json.loads(rec.to_json())["parity"]["int8"]["tolerance"] == 0.1


def test_a_record_written_before_reference_profiles_reads_as_having_none():
    data = record().to_dict()
    del data["reference"]
    assert ExportRecord.from_dict(data).reference is None
    assert ExportRecord.from_json(replace(record(), reference="reference.json").to_json()).reference == "reference.json"


def test_unknown_fields_are_ignored_and_missing_ones_refused():
    data = {**record().to_dict(), "written_by_a_newer_exporter": True}
    assert ExportRecord.from_dict(data).name == "m"
    del data["sha256"]
    with pytest.raises(TypeError):
        ExportRecord.from_dict(data)
    with pytest.raises(ValueError):
        ExportRecord.from_json("[1, 2]")


def test_parity_results_describe_themselves_for_messages():
    assert ParityResult(2e-3, 0.5, 1e-4, 68, False).describe() == (
        "max abs error 0.002, max rel error 0.5, tolerance 0.0001, 68 inputs"
    )


def test_a_complete_export_is_found_with_its_settings(register, mlflow_server, tmp_path):
    model = register(alias="champion")
    resolved = resolve(mlflow_server, f"models:/{model.name}@champion")
    rec = record(model.name, "1", model.run_id)
    publish(mlflow_server, model.run_id, rec, tmp_path)
    found = find_export(mlflow_server, resolved, opset=18, quantize="none", tolerance=1e-4)
    assert found is not None and found.sha256 == rec.sha256 and found.onnx_uri == rec.onnx_uri
    assert found.reused and found.alias == "champion" and found.source_uri == f"models:/{model.name}@champion"
    assert read_export(mlflow_server, model.run_id, rec.artifact_path) == replace(rec)


def test_other_settings_find_nothing(register, mlflow_server, tmp_path):
    model = register()
    resolved = resolve(mlflow_server, f"models:/{model.name}/1")
    publish(mlflow_server, model.run_id, record(model.name, "1", model.run_id), tmp_path)
    for settings in ({"opset": 17}, {"quantize": "dynamic-int8"}, {"tolerance": 1e-3}):
        kwargs = {"opset": 18, "quantize": "none", "tolerance": 1e-4, **settings}
        assert find_export(mlflow_server, resolved, **kwargs) is None, settings


def test_a_half_written_export_or_one_of_the_wrong_size_is_not_complete(register, mlflow_server, tmp_path):
    model = register()
    resolved = resolve(mlflow_server, f"models:/{model.name}/1")
    half = record(model.name, "1", model.run_id, digest="half00")
    publish(mlflow_server, model.run_id, half, tmp_path, marker=False)  # the upload died before the marker
    short = record(model.name, "1", model.run_id, digest="short0")
    publish(mlflow_server, model.run_id, short, tmp_path, onnx=ONNX[:-3])
    assert read_export(mlflow_server, model.run_id, half.artifact_path) is None
    assert read_export(mlflow_server, model.run_id, short.artifact_path) is None
    assert find_export(mlflow_server, resolved, opset=18, quantize="none", tolerance=1e-4) is None


def test_an_export_whose_gate_failed_is_never_reused(register, mlflow_server, tmp_path):
    model = register()
    resolved = resolve(mlflow_server, f"models:/{model.name}/1")
    publish(mlflow_server, model.run_id, record(model.name, "1", model.run_id, passed=False), tmp_path)
    assert find_export(mlflow_server, resolved, opset=18, quantize="none", tolerance=1e-4) is None


def test_the_newest_of_several_matching_exports_wins(register, mlflow_server, tmp_path):
    model = register()
    resolved = resolve(mlflow_server, f"models:/{model.name}/1")
    old = record(model.name, "1", model.run_id, digest="old000", created_at="2026-01-01T00:00:00+00:00")
    new = record(model.name, "1", model.run_id, digest="new000", created_at="2026-02-01T00:00:00+00:00")
    publish(mlflow_server, model.run_id, new, tmp_path)
    publish(mlflow_server, model.run_id, old, tmp_path)
    assert find_export(mlflow_server, resolved, opset=18, quantize="none", tolerance=1e-4).settings_hash == "new000"


def test_a_version_without_a_run_is_looked_up_in_its_export_run(register, mlflow_server, tmp_path):
    model = register(with_run=False)
    resolved = resolve(mlflow_server, f"models:/{model.name}/1")
    assert resolved.run_id is None
    assert find_export(mlflow_server, resolved, opset=18, quantize="none", tolerance=1e-4) is None
    mc = client(mlflow_server)
    exp = mc.get_experiment_by_name(EXPORT_EXPERIMENT)
    exp_id = exp.experiment_id if exp else mc.create_experiment(EXPORT_EXPERIMENT)
    run_id = mc.create_run(exp_id, tags={EXPORT_RUN_TAG: f"{model.name}/1"}).info.run_id
    publish(mlflow_server, run_id, record(model.name, "1", run_id), tmp_path)
    assert find_export(mlflow_server, resolved, opset=18, quantize="none", tolerance=1e-4).run_id == run_id


def test_a_run_that_does_not_exist_holds_no_export(mlflow_server):
    assert read_export(mlflow_server, "0" * 32, artifact_dir(18, "none", "abc")) is None
